"""A dry run: what ``apply_credits`` would do with a batch, writing and sending nothing.

The batch is read a chunk at a time and checked against the journal (read without its
lock) as the real merge would check it; refs already seen are kept in a scratch SQLite
file, so memory holds one chunk whatever the batch's size.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import tempfile
from collections.abc import Iterable, Sequence

from .adjustments import AdjustmentReport, AdjustmentRow, AdjustmentState, CreditAdjustment, Tally
from .journal import Journal
from .merge import CHUNK, EDITABLE
from .options import BulkOptions, OnProgress
from .rows import LISTED_CONFLICTS, conflict_error


async def dry_run_report(
    adjustments: Iterable[CreditAdjustment],
    journal: str | os.PathLike[str] | Journal,
    options: BulkOptions,
) -> AdjustmentReport:
    """The report of a dry run (see ``apply_credits``).

    :raises ValueError: a bad item, or a ref given twice.
    :raises JournalConflictError: as the real run would.
    """
    if isinstance(journal, Journal) and journal.is_open:
        return await _plan(adjustments, journal, options)
    path = journal.path if isinstance(journal, Journal) else os.fspath(journal)
    if not await asyncio.to_thread(os.path.exists, path):
        return await _plan(adjustments, None, options)
    async with Journal(path, read_only=True) as store:
        return await _plan(adjustments, store, options)


async def _plan(
    adjustments: Iterable[CreditAdjustment], journal: Journal | None, options: BulkOptions
) -> AdjustmentReport:
    tally = Tally()
    if journal is not None:
        await journal._count_into(tally)
    sendable = {AdjustmentState.PENDING}
    if options.resend_unconfirmed:
        sendable.add(AdjustmentState.NOT_APPLIED)
    conflicts: list[str] = []
    listed: list[tuple[CreditAdjustment, AdjustmentRow]] = []
    progress = options.on_progress
    with tempfile.TemporaryDirectory(prefix="inveterate-plan-") as scratch:
        seen = _Seen(os.path.join(scratch, "seen.sqlite"))
        try:
            chunk: list[CreditAdjustment] = []
            for adjustment in adjustments:
                if not isinstance(adjustment, CreditAdjustment):
                    raise ValueError(f"not a CreditAdjustment: {type(adjustment).__name__}")
                chunk.append(adjustment)
                if len(chunk) == CHUNK:
                    await _chunk(chunk, journal, seen, tally, sendable, conflicts, listed, progress)
                    chunk = []
            if chunk:
                await _chunk(chunk, journal, seen, tally, sendable, conflicts, listed, progress)
        finally:
            seen.close()
    if conflicts:
        path = journal.path if journal is not None else ""
        raise conflict_error(path, listed, conflicts)
    return tally.report(dry_run=True)


async def _chunk(
    chunk: Sequence[CreditAdjustment],
    journal: Journal | None,
    seen: _Seen,
    tally: Tally,
    sendable: set[AdjustmentState],
    conflicts: list[str],
    listed: list[tuple[CreditAdjustment, AdjustmentRow]],
    on_progress: OnProgress | None,
) -> None:
    await asyncio.to_thread(seen.add, [a.ref for a in chunk])
    existing = {} if journal is None else await journal._rows_by_ref([a.ref for a in chunk])
    for adjustment in chunk:
        row = existing.get(adjustment.ref)
        if row is None:
            new = AdjustmentRow(adjustment, AdjustmentState.PENDING)
            tally.count(new.state, adjustment.amount)
        elif row.adjustment.same_content(adjustment):
            new = row
        elif row.state in EDITABLE:
            tally.count(row.state, row.adjustment.amount, -1)
            new = AdjustmentRow(adjustment, AdjustmentState.PENDING)
            tally.count(new.state, adjustment.amount)
        else:
            conflicts.append(adjustment.ref)
            if len(listed) < LISTED_CONFLICTS:
                listed.append((adjustment, row))
            continue
        if new.state in sendable:
            tally.would_send(new)
            if on_progress is not None:
                on_progress(new)
        if new.state is not AdjustmentState.APPLIED:
            tally.list_attention(new)


class _Seen:
    """The refs of the batch so far, in a scratch file."""

    def __init__(self, path: str) -> None:
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("CREATE TABLE seen (ref TEXT PRIMARY KEY)")

    def add(self, refs: list[str]) -> None:
        """Note refs; ValueError for one seen before."""
        for ref in refs:
            try:
                self._db.execute("INSERT INTO seen VALUES (?)", (ref,))
            except sqlite3.IntegrityError:
                raise ValueError(f"ref {ref!r} is given twice") from None

    def close(self) -> None:
        """Close the scratch file."""
        self._db.close()
