"""The clients of the export benchmark: what each one runs to write the same CSV.

- :func:`raw_export`: the hand-written aiohttp loop a careful engineer writes for the
  job: a window of ``concurrency`` members in flight, each member's pages followed with
  its cursor, amounts parsed as ``Decimal`` (exact digits), and members written in order
  with the ``csv`` module, into a partial file renamed into place at the end (timestamps
  written as the SDK writes them, so that the files are the same bytes).
- :func:`sdk_export`: ``export_credits`` (with or without a ``state`` file).
- ``credits export`` runs as its own process (see ``benchmarks/export.py``).
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
from collections import deque
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
from yarl import URL

from benchmarks._workloads import API_KEY, API_KEY_HEADER, Workload

COLUMNS = ("member_id", "created_at", "amount", "new_balance", "reason", "note", "id")


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


async def raw_export(base_url: str, workload: Workload, out: Path) -> None:
    """The hand-written loop (see the module docstring)."""
    connector = aiohttp.TCPConnector(limit=max(100, workload.concurrency))
    async with aiohttp.ClientSession(
        headers={API_KEY_HEADER: API_KEY}, connector=connector
    ) as session:

        async def member_rows(member_id: str) -> list[list[str]]:
            prefix = (
                f"{base_url}/admin/members/{quote(member_id, safe='')}/credits"
                f"?limit={workload.page_size}"
            )
            url = URL(prefix, encoded=True)
            rows: list[list[str]] = []
            while True:
                async with session.get(url) as resp:
                    resp.raise_for_status()
                    body = await resp.read()
                data = json.loads(body, parse_float=Decimal)["data"]
                for c in data["credits"]:
                    rows.append(
                        [
                            member_id,
                            # The SDK's one timestamp format: no ".000" fraction.
                            c["createdAt"].replace(".000Z", "Z"),
                            str(c["amount"]),
                            str(c["newBalance"]),
                            _cell(c.get("reason")),
                            _cell(c.get("note")),
                            _cell(c.get("id")),
                        ]
                    )
                cursor = data["lastCreditEntry"]
                if cursor is None:
                    return rows
                url = URL(f"{prefix}&lastCreditEntry={quote(cursor, safe='')}", encoded=True)

        partial = out.with_name(f".{out.name}.partial")
        # Blocking writes on the loop, as a hand-written loop does (small, buffered).
        with open(partial, "w", encoding="utf-8", newline="") as file:  # noqa: ASYNC230
            writer = csv.writer(file, lineterminator="\n")
            writer.writerow(COLUMNS)
            window: deque[asyncio.Task[list[list[str]]]] = deque()
            for member_id in workload.member_ids():
                window.append(asyncio.ensure_future(member_rows(member_id)))
                if len(window) >= workload.concurrency:
                    writer.writerows(await window.popleft())
            while window:
                writer.writerows(await window.popleft())
        os.replace(partial, out)


async def sdk_export(base_url: str, workload: Workload, out: Path, state: Path | None) -> None:
    """``export_credits`` into ``out`` (resumable with ``state``)."""
    from inveterate_async import InveterateClient, export_credits

    async with InveterateClient(API_KEY, base_url=base_url) as client:
        report = await export_credits(
            client,
            workload.member_ids(),
            out,
            state=state,
            concurrency=workload.concurrency,
            page_size=workload.page_size,
        )
    if report.failures:
        raise RuntimeError(f"{len(report.failures)} member(s) failed")
