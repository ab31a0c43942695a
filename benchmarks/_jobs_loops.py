"""The hand-written aiohttp loops the SDK's bulk path is measured against.

Each reads the batch file, then sends one POST per row with an ``asyncio.Semaphore`` of the
job's concurrency around every request, and raises for any non-2xx answer. They are what a
careful person writes by hand for the job, and nothing more:

- :func:`post_only`: the POSTs alone, no journal: the floor of the job.
- :func:`with_journal`: the same, with a SQLite journal (WAL, ``synchronous=FULL``): every
  row inserted ``pending`` first (one transaction), then ``sending`` committed before its
  POST and ``applied`` (with the echoed entry id) committed after it. The commits are
  plain blocking ``sqlite3`` calls on the event loop's thread, one transaction (one fsync)
  each: the straightforward way to write it.
- :func:`read_then_write`: each member's ledger read once, every page, then its POSTs:
  the requests a run that checks ledgers before sending cannot avoid.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote

import aiohttp
from yarl import URL

from benchmarks._jobs_spec import Job, Row, read_csv
from benchmarks._workloads import API_KEY_HEADER
from benchmarks.cluster import API_KEY

_JSON = {"Content-Type": "application/json"}


class Outcome(NamedTuple):
    """What a client run did: the rows it sent and a word on how."""

    sent: int
    via: str


@asynccontextmanager
async def _session(job: Job) -> AsyncIterator[aiohttp.ClientSession]:
    # aiohttp's default pool (100 connections), or one connection per request in flight.
    connector = aiohttp.TCPConnector(limit=max(100, job.concurrency))
    async with aiohttp.ClientSession(
        headers={API_KEY_HEADER: API_KEY}, connector=connector
    ) as session:
        yield session


def _credits_url(base_url: str, member_id: str) -> str:
    return f"{base_url}/admin/members/{quote(member_id, safe='')}/credits"


def _body(row: Row) -> bytes:
    """The CreditDto: the amount as a JSON number with the file's exact digits."""
    note = "" if row.note is None else f',"note":{json.dumps(row.note)}'
    return f'{{"amount":{row.amount}{note}}}'.encode()


async def _post(session: aiohttp.ClientSession, base_url: str, row: Row) -> dict[str, Any]:
    url = URL(_credits_url(base_url, row.member_id), encoded=True)
    async with session.post(url, data=_body(row), headers=_JSON) as response:
        response.raise_for_status()
        data: dict[str, Any] = (await response.json())["data"]
    return data


async def post_only(base_url: str, job: Job, csv_path: str, workdir: Path) -> Outcome:
    """One POST per row, ``concurrency`` at a time."""
    rows = read_csv(csv_path)
    semaphore = asyncio.Semaphore(job.concurrency)
    async with _session(job) as session:

        async def send(row: Row) -> None:
            async with semaphore:
                await _post(session, base_url, row)

        await asyncio.gather(*map(send, rows))
    return Outcome(len(rows), f"Semaphore({job.concurrency}) around each POST")


_SCHEMA = """
CREATE TABLE adjustments (
    ref       TEXT PRIMARY KEY,
    member_id TEXT NOT NULL,
    amount    TEXT NOT NULL,
    note      TEXT,
    state     TEXT NOT NULL,
    entry_id  TEXT
)
"""


async def with_journal(base_url: str, job: Job, csv_path: str, workdir: Path) -> Outcome:
    """:func:`post_only` with a journal row per adjustment, committed around each POST."""
    rows = read_csv(csv_path)
    semaphore = asyncio.Semaphore(job.concurrency)
    # isolation_level=None: every statement outside BEGIN is its own committed transaction.
    db = sqlite3.connect(workdir / "loop-journal.sqlite", isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute(_SCHEMA)
        db.execute("BEGIN IMMEDIATE")
        db.executemany(
            "INSERT INTO adjustments VALUES (?, ?, ?, ?, 'pending', NULL)",
            [(row.ref, row.member_id, row.amount, row.note) for row in rows],
        )
        db.execute("COMMIT")
        async with _session(job) as session:

            async def send(row: Row) -> None:
                async with semaphore:
                    db.execute("UPDATE adjustments SET state = 'sending' WHERE ref = ?", (row.ref,))
                    entry = await _post(session, base_url, row)
                    db.execute(
                        "UPDATE adjustments SET state = 'applied', entry_id = ? WHERE ref = ?",
                        (str(entry["id"]), row.ref),
                    )

            await asyncio.gather(*map(send, rows))
        (applied,) = db.execute(
            "SELECT count(*) FROM adjustments WHERE state = 'applied'"
        ).fetchone()
    finally:
        db.close()
    if applied != len(rows):
        raise RuntimeError(f"journal: {applied} of {len(rows)} rows applied")
    return Outcome(len(rows), "Semaphore + sqlite3 commit before and after each POST")


async def read_then_write(base_url: str, job: Job, csv_path: str, workdir: Path) -> Outcome:
    """Per member: every page of its ledger, then its POSTs, one request per permit."""
    rows = read_csv(csv_path)
    by_member: dict[str, list[Row]] = {}
    for row in rows:
        by_member.setdefault(row.member_id, []).append(row)
    semaphore = asyncio.Semaphore(job.concurrency)
    pages = 0
    async with _session(job) as session:

        async def member(member_id: str, its_rows: list[Row]) -> None:
            nonlocal pages
            first = _credits_url(base_url, member_id)
            url = URL(first, encoded=True)
            while True:
                async with semaphore, session.get(url) as response:
                    response.raise_for_status()
                    data = (await response.json())["data"]
                pages += 1
                cursor = data["lastCreditEntry"]
                if cursor is None:
                    break
                url = URL(f"{first}?lastCreditEntry={quote(cursor, safe='')}", encoded=True)
            for row in its_rows:
                async with semaphore:
                    await _post(session, base_url, row)

        await asyncio.gather(*(member(m, its_rows) for m, its_rows in by_member.items()))
    return Outcome(len(rows), f"{pages} ledger page(s) read, then the POSTs")
