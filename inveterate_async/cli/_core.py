"""The async work behind the commands, shared by the commands and the demo.

Nothing here prints to the user directly: rows go to writers and counts to trackers.
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import TextIO

import attrs

from .. import InveterateClient, MemberFailure
from ..testing import Sandbox
from ._output import RowWriter, credit_row
from ._progress import Tracker

SANDBOX_API_KEY = "sandbox-key"
"""The key of the embedded sandbox (a test key, not a secret)."""

NO_KEY_MESSAGE = (
    "no API key: pass --api-key, set INVETERATE_API_KEY, or use --sandbox to try the "
    "embedded sandbox"
)

_FLUSH_EVERY_ROWS = 512
_FLUSH_EVERY_SECONDS = 0.5
_TRACK_EVERY_ROWS = 64
_ID_BATCH_CHARS = 1 << 16


@attrs.frozen
class Settings:
    """The group's global options."""

    api_key: str | None = attrs.field(default=None, repr=False)
    base_url: str | None = None
    sandbox: bool = False
    sandbox_members: int = 100
    max_retries: int = 2


async def start_sandbox(
    *,
    members: int,
    seed: int = 0,
    api_key: str = SANDBOX_API_KEY,
    host: str = "127.0.0.1",
    port: int = 0,
    credits_per_member: int = 5,
    page_size: int = 50,
    latency: float = 0.0,
    fail_rate: float = 0.0,
    record_requests: bool = True,
) -> Sandbox:
    """Start a :class:`Sandbox` with ``members`` seeded members ``"1"``, ``"2"``, ...

    ``fail_rate`` reads fail with a transient 503 (seeded with ``seed``).
    """
    sandbox = Sandbox(
        api_key=api_key,
        host=host,
        port=port,
        default_limit=page_size,
        latency=latency,
        record_requests=record_requests,
    )
    sandbox.seed_members(members, credits_per_member=credits_per_member, seed=seed)
    sandbox.fail_randomly(fail_rate, seed=seed)
    return await sandbox.start()


@asynccontextmanager
async def connect(settings: Settings) -> AsyncIterator[InveterateClient]:
    """A client for the real API, or for an embedded seeded sandbox with ``--sandbox``."""
    if settings.sandbox:
        sandbox = await start_sandbox(members=settings.sandbox_members)
        try:
            async with InveterateClient(
                SANDBOX_API_KEY, base_url=sandbox.base_url, max_retries=settings.max_retries
            ) as client:
                yield client
        finally:
            await sandbox.close()
        return
    async with InveterateClient(
        settings.api_key, base_url=settings.base_url, max_retries=settings.max_retries
    ) as client:
        yield client


@attrs.define
class LedgerState:
    """How far ``write_ledger`` got: what to resume from if it stops early.

    ``resume`` is the ``next_cursor`` of the last page written completely (or the cursor
    the listing started from); ``more`` is set when ``max_items`` stopped the listing
    exactly at the end of a page that has a successor.
    """

    resume: str | None = None
    printed: int = 0
    pages: int = 0
    more: str | None = None


async def write_ledger(
    client: InveterateClient,
    member_id: str,
    writer: RowWriter,
    state: LedgerState,
    *,
    page_size: int | None = None,
    max_items: int | None = None,
    tracker: Tracker | None = None,
) -> None:
    """Write a member's ledger page by page from ``state.resume``, flushing each page."""
    tracker = tracker or Tracker()
    pages = client.iter_credit_pages(member_id, page_size=page_size, cursor=state.resume)
    try:
        async for page in pages:
            credits = page.credits
            if max_items is not None:
                credits = credits[: max_items - state.printed]
            writer.write_rows([credit_row(credit) for credit in credits])
            writer.flush()
            state.printed += len(credits)
            state.pages += 1
            tracker.update(credits=state.printed, pages=state.pages)
            if len(credits) < len(page.credits):
                return  # max_items reached inside this page
            state.resume = page.next_cursor
            if max_items is not None and state.printed >= max_items:
                state.more = page.next_cursor
                return
    finally:
        await _aclose(pages)


@attrs.define
class ExportResult:
    """The running totals of ``export_ledgers``."""

    rows: int = 0
    members_done: int = 0
    failures: list[MemberFailure] = attrs.field(factory=list)


async def export_ledgers(
    client: InveterateClient,
    member_ids: AsyncIterator[str],
    writer: RowWriter,
    result: ExportResult,
    *,
    concurrency: int = 8,
    page_size: int | None = None,
    tracker: Tracker | None = None,
) -> None:
    """Write every credit of many members (``member_id`` first), failures collected.

    Rows are written as they arrive and flushed every few hundred rows or half second.
    """
    tracker = tracker or Tracker()
    loop = asyncio.get_running_loop()
    last_flush = loop.time()
    stream = client.iter_credits_many(
        member_ids, concurrency=concurrency, page_size=page_size, on_error="collect"
    )
    try:
        async with stream:
            async for member_id, credit in stream:
                writer.write_row((member_id, *credit_row(credit)))
                result.rows += 1
                if result.rows % _TRACK_EVERY_ROWS == 0:
                    result.members_done = stream.members_done
                    tracker.update(credits=result.rows, members=result.members_done)
                    if (
                        result.rows % _FLUSH_EVERY_ROWS == 0
                        or loop.time() - last_flush > _FLUSH_EVERY_SECONDS
                    ):
                        writer.flush()
                        last_flush = loop.time()
    finally:
        writer.flush()
        result.members_done = stream.members_done
        result.failures = list(stream.failures)
        tracker.update(credits=result.rows, members=result.members_done)


def _is_regular_file(stream: TextIO) -> bool:
    try:
        return stat.S_ISREG(os.fstat(stream.fileno()).st_mode)
    except (AttributeError, OSError, ValueError):
        return False


async def read_member_ids(args: Iterable[str], stream: TextIO | None) -> AsyncIterator[str]:
    """Yield the ids in ``args``, then one per non-blank line of ``stream``, lazily.

    Lines are read in a worker thread (a slow pipe never blocks the requests in flight):
    a regular file in batches, anything else line by line.
    """
    for member_id in args:
        if member_id.strip():
            yield member_id.strip()
    if stream is None:
        return
    read: Callable[[], list[str]]
    if _is_regular_file(stream):

        def read() -> list[str]:
            return stream.readlines(_ID_BATCH_CHARS)
    else:

        def read() -> list[str]:
            line = stream.readline()
            return [line] if line else []

    while lines := await asyncio.to_thread(read):
        for line in lines:
            member_id = line.strip()
            if member_id:
                yield member_id


def count_member_ids(path: str) -> int:
    """The number of non-blank lines of a file, read in constant memory."""
    with open(path, encoding="utf-8-sig") as file:
        return sum(1 for line in file if line.strip())


async def _aclose(iterator: object) -> None:
    close = getattr(iterator, "aclose", None)
    if close is not None:
        await close()
