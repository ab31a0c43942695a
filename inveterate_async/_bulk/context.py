"""What the phases of one bulk run share: the API, the journal, the options, and the
run's own state (whether a POST may have left, and the error that stopped it)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TypeVar

import attrs

from .._errors import InveterateError, JournalLockedError
from .adjustments import AdjustmentRow, AdjustmentState, CandidateEntry
from .api import CreditsAPI
from .journal import Journal
from .options import BulkOptions

T = TypeVar("T")


class RunContext:
    """The shared state of one ``apply_credits`` run."""

    def __init__(self, api: CreditsAPI, journal: Journal, options: BulkOptions) -> None:
        self.api = api
        self.journal = journal
        self.options = options
        self.run = journal._run_number
        self.may_have_sent = False
        self.stopped_by: InveterateError | None = None

    def notify(self, row: AdjustmentRow) -> None:
        """Report a row's new state to ``on_progress``."""
        if self.options.on_progress is not None:
            self.options.on_progress(row)

    def stop(self, error: InveterateError) -> None:
        """Stop sending: the key was refused."""
        if self.stopped_by is None:
            self.stopped_by = error

    async def record(
        self,
        row: AdjustmentRow,
        state: AdjustmentState,
        *,
        entry_id: str | None = None,
        error: str | None = None,
        candidates: Sequence[CandidateEntry] = (),
    ) -> AdjustmentRow:
        """Durably move a row from its current state to ``state``, and report it.

        :raises JournalLockedError: the row changed under this run (another writer).
        """
        changed = await self.journal._record(
            row.ref, row.state, state, entry_id=entry_id, error=error, candidates=candidates
        )
        if not changed:
            raise taken(self.journal, row)
        new = attrs.evolve(
            row,
            state=state,
            entry_id=entry_id or row.entry_id,
            error=error or row.error,
            candidates=tuple(candidates),
        )
        self.notify(new)
        return new


def taken(journal: Journal, row: AdjustmentRow) -> JournalLockedError:
    """The error for a row that another writer changed under this run."""
    return JournalLockedError(
        f"journal {journal.path}: row {row.ref!r} was changed by another writer; this run stopped",
        path=journal.path,
        holder="another writer",
    )


async def each(
    items: AsyncIterator[T], work: Callable[[T], Awaitable[None]], concurrency: int
) -> None:
    """``work`` on every item of ``items``, ``concurrency`` at a time; on an error or a
    cancellation the other workers are cancelled and waited for, so that every row they
    were writing is recorded before this returns."""
    lock = asyncio.Lock()

    async def worker() -> None:
        while True:
            async with lock:
                try:
                    item = await items.__anext__()
                except StopAsyncIteration:
                    return
            await work(item)

    tasks = [asyncio.ensure_future(worker()) for _ in range(concurrency)]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
