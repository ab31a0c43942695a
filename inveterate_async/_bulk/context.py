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
        # Records queued without waiting (see record_soon), and the first that failed.
        self._unsettled: set[asyncio.Future[bool]] = set()
        self._failure: Exception | None = None

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

    def record_soon(
        self,
        row: AdjustmentRow,
        state: AdjustmentState,
        *,
        entry_id: str | None = None,
        error: str | None = None,
    ) -> AdjustmentRow:
        """Move a row to ``state`` in the next group commit, and report it, without
        waiting: for the outcome of a POST, whose durability the next mark (committed in
        the same or a later group) or :meth:`settle` waits for. A failure is raised by
        :meth:`check` or :meth:`settle`."""
        queued = self.journal._record_soon(row.ref, row.state, state, entry_id, error)
        self._unsettled.add(queued)

        def settled(future: asyncio.Future[bool]) -> None:
            self._unsettled.discard(future)
            if future.cancelled() or self._failure is not None:
                return
            failure = future.exception()
            if failure is None and not future.result():
                failure = taken(self.journal, row)
            if isinstance(failure, Exception):
                self._failure = failure

        queued.add_done_callback(settled)
        new = attrs.evolve(
            row, state=state, entry_id=entry_id or row.entry_id, error=error or row.error
        )
        self.notify(new)
        return new

    @property
    def failed(self) -> bool:
        """Whether a record queued by :meth:`record_soon` failed."""
        return self._failure is not None

    def check(self) -> None:
        """Raise the failure of a record queued by :meth:`record_soon`, if one failed.

        :raises JournalError: it could not be written, or another writer has the row.
        """
        if self._failure is not None:
            raise self._failure

    async def settle(self) -> None:
        """Wait until every record queued by :meth:`record_soon` is durable; see
        :meth:`check`."""
        while self._unsettled:
            await asyncio.wait(set(self._unsettled))
        self.check()


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
