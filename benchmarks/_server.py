"""Local credits API server with pre-rendered pages, run in its own process.

``python -m benchmarks._server WORKLOAD_JSON`` renders every page of the workload as bytes,
listens on 127.0.0.1 with an ephemeral port (answering each request after the workload's
``latency_ms``) and prints one JSON line
``{"port": ..., "count": ..., "checksum": ...}`` once ready. It serves until SIGTERM, SIGINT
or EOF on stdin. ``GET /_stats`` returns request and error counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import IO
from urllib.parse import parse_qs, urlsplit

from benchmarks._workloads import API_KEY, API_KEY_HEADER, Workload

START = datetime(2023, 1, 1, tzinfo=timezone.utc)
REASONS = ("purchase reward", "referral bonus", "birthday gift", "manual adjustment")
NOTES = (None, None, None, "Welcome back!", "Order #1001 \u2014 thank you", 'VIP "gold" tier')
_REASONS_JSON = tuple(json.dumps(r) for r in REASONS)
_NOTES_JSON = tuple(json.dumps(n) for n in NOTES)


@dataclass
class Dataset:
    """Every page of a workload as response bytes, keyed the way requests find them."""

    first_pages: dict[str, bytes] = field(default_factory=dict)
    next_pages: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    count: int = 0
    total_cents: int = 0


def _money(cents: int) -> str:
    """Exact two-decimal JSON number, e.g. 1250 -> 12.50."""
    sign = "-" if cents < 0 else ""
    return f"{sign}{abs(cents) // 100}.{abs(cents) % 100:02d}"


def _page(credits: list[str], cursor: str | None) -> bytes:
    last = "null" if cursor is None else json.dumps(cursor)
    body = (
        '{"message":"Credits retrieved successfully","data":{"credits":['
        + ",".join(credits)
        + '],"lastCreditEntry":'
        + last
        + "}}"
    )
    return body.encode()


def _add_member(dataset: Dataset, workload: Workload, member_id: str, rng: random.Random) -> None:
    """Render one member's history, oldest first, and register each page under its key."""
    created = START + timedelta(days=rng.randint(0, 365))
    balance = 0
    credits: list[str] = []
    cursor: str | None = None
    for n in range(1, workload.credits_per_member + 1):
        created += timedelta(milliseconds=rng.randint(1_000, 120_000))
        if balance > 0 and rng.random() < 0.15:
            cents = -rng.randint(1, min(balance, 20_000))
            reason = '"redemption"'
        else:
            cents = rng.randint(1, 25_000)
            reason = rng.choice(_REASONS_JSON)
        balance += cents
        stamp = created.isoformat(timespec="milliseconds")
        credit_id = f"cr_{n:07d}"
        credits.append(
            f'{{"id":"{credit_id}","amount":{_money(cents)},"createdAt":"{stamp[:-6]}Z",'
            f'"newBalance":{_money(balance)},"reason":{reason},"note":{rng.choice(_NOTES_JSON)}}}'
        )
        if len(credits) == workload.page_size and n < workload.credits_per_member:
            sort_key = f"{stamp}#{credit_id}"
            next_cursor = json.dumps(
                {"pk": f"member#{member_id}", "sk": sort_key}, separators=(",", ":")
            )
            _store(dataset, member_id, cursor, _page(credits, next_cursor))
            cursor, credits = next_cursor, []
    _store(dataset, member_id, cursor, _page(credits, None))
    dataset.count += workload.credits_per_member
    dataset.total_cents += balance


def _store(dataset: Dataset, member_id: str, cursor: str | None, body: bytes) -> None:
    if cursor is None:
        dataset.first_pages[member_id] = body
    else:
        dataset.next_pages[cursor] = (member_id, body)


def build_dataset(workload: Workload, seed: int = 20240301) -> Dataset:
    """Render all pages of ``workload`` deterministically."""
    rng = random.Random(seed)
    dataset = Dataset()
    for member_id in workload.member_ids():
        _add_member(dataset, workload, member_id, rng)
    return dataset


async def _serve(workload: Workload) -> None:
    from aiohttp import web

    dataset = build_dataset(workload)
    limit = [str(workload.page_size)]
    latency = workload.latency_ms / 1000
    stats = {"requests": 0, "errors": 0}

    def fail(status: int, message: str) -> web.Response:
        stats["errors"] += 1
        return web.json_response({"message": message, "data": {}}, status=status)

    async def credits(request: web.Request) -> web.Response:
        stats["requests"] += 1
        if request.headers.get(API_KEY_HEADER) != API_KEY:
            return fail(401, "bad API key")
        member_id = request.match_info["id"]
        query = parse_qs(urlsplit(request.raw_path).query, keep_blank_values=True)
        if query.get("limit") != limit:
            return fail(400, f"limit must be {limit[0]}, got {query.get('limit')}")
        cursor = query.get("lastCreditEntry")
        if cursor is None:
            body = dataset.first_pages.get(member_id)
            if body is None:
                return fail(404, f"unknown member {member_id}")
        else:
            owner, body = dataset.next_pages.get(cursor[-1], ("", b""))
            if len(cursor) != 1 or owner != member_id:
                return fail(400, f"unknown lastCreditEntry {cursor!r}")
        if latency:
            await asyncio.sleep(latency)
        return web.Response(body=body, content_type="application/json")

    async def get_stats(request: web.Request) -> web.Response:
        return web.json_response(stats)

    app = web.Application()
    app.router.add_get("/v2.0/admin/members/{id}/credits", credits)
    app.router.add_get("/_stats", get_stats)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        checksum = Decimal(dataset.total_cents).scaleb(-2)
        ready = {"port": port, "count": dataset.count, "checksum": str(checksum)}
        print(json.dumps(ready), flush=True)
        await _wait_for_stop()
    finally:
        await runner.cleanup()


async def _wait_for_stop() -> None:
    """Return on SIGTERM, SIGINT or EOF on stdin (the parent went away)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    def on_stdin() -> None:
        if not os.read(stdin, 4096):
            stop.set()

    stdin = sys.stdin.fileno()
    loop.add_reader(stdin, on_stdin)
    await stop.wait()


@dataclass(frozen=True)
class RunningServer:
    """A started server process as the harness sees it."""

    port: int
    count: int
    checksum: Decimal

    @property
    def base_url(self) -> str:
        """The SDK's ``base_url`` for this server."""
        return f"http://127.0.0.1:{self.port}/v2.0"

    def stats(self) -> dict[str, int]:
        """Request and error counters since the server started."""
        from urllib.request import urlopen

        with urlopen(f"http://127.0.0.1:{self.port}/_stats", timeout=10) as response:
            stats: dict[str, int] = json.load(response)
        return stats


def _read_ready_line(stream: IO[bytes], timeout: float) -> bytes:
    ready, _, _ = select.select([stream], [], [], timeout)
    if not ready:
        raise TimeoutError(f"server not ready after {timeout:.0f} s")
    return stream.readline()


@contextlib.contextmanager
def run_server(workload: Workload) -> Iterator[RunningServer]:
    """Start the server for ``workload`` in a subprocess; always terminate it on exit."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks._server", workload.to_json()],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    try:
        line = _read_ready_line(proc.stdout, timeout=60 + workload.expected_count / 20_000)
        if not line:
            raise RuntimeError(f"server exited early with status {proc.wait()}")
        ready = json.loads(line)
        yield RunningServer(ready["port"], ready["count"], Decimal(ready["checksum"]))
    finally:
        proc.stdin.close()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()


if __name__ == "__main__":
    asyncio.run(_serve(Workload.from_json(sys.argv[1])))
