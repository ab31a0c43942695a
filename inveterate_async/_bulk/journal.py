"""The journal of bulk adjustments, for asyncio: one row per ref, crash-safe, one writer.

Every call runs on the journal's own thread, which alone holds the SQLite connection:
calls run in order, and a write whose caller was cancelled still completes. Row updates
that queue up while a commit is under way are committed together (one fsync for many
rows); each caller resumes only once its own update is durable.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from functools import partial
from types import TracebackType
from typing import Any, TypeVar

from .._errors import JournalError
from .adjustments import (
    ATTENTION_LIMIT,
    AdjustmentReport,
    AdjustmentRow,
    AdjustmentState,
    CandidateEntry,
    CreditAdjustment,
    Tally,
)
from .journal_file import JournalFile
from .merge import CHUNK, Merge
from .rows import LEGACY_SENDING
from .stored import Stored

T = TypeVar("T")


class Journal:
    """A bulk adjustment's journal: a SQLite file with one row per ``ref``.

    Pass a path to ``apply_credits`` and it opens and closes the journal; open one yourself
    to read it::

        async with Journal("gold-bonus.sqlite", read_only=True) as journal:
            report = await journal.report()

    :param path: the journal file; created (mode 0600) when opened for writing. It must
        be on a local filesystem, with one name: the lock is an ``flock`` on the file
        itself, whatever path reaches it (a symlink too), and a file with a hard link is
        refused (SQLite keeps the write-ahead log beside one name).
    :param read_only: read without taking the lock (while another process applies from
        it, say, or from a read-only copy); the file must exist.
    """

    def __init__(self, path: str | os.PathLike[str], *, read_only: bool = False) -> None:
        self._path = os.fspath(path)
        self._read_only = read_only
        self._executor: ThreadPoolExecutor | None = None
        self._file: JournalFile | None = None
        self.busy = False  # an apply_credits call is using it
        # Row updates waiting for the next group commit, and the task committing them.
        self._queued: list[tuple[Callable[[], Any], asyncio.Future[Any]]] = []
        self._committer: asyncio.Task[None] | None = None
        self._closing: asyncio.Future[None] | None = None

    def __repr__(self) -> str:
        return f"Journal({self._path!r}, read_only={self._read_only})"

    @property
    def path(self) -> str:
        """The journal file."""
        return self._path

    @property
    def read_only(self) -> bool:
        """Whether it was opened without the lock, for reading only."""
        return self._read_only

    @property
    def is_open(self) -> bool:
        """Whether :meth:`open` succeeded and :meth:`close` was not called since."""
        return self._executor is not None

    async def open(self) -> Journal:
        """Open the file (creating it for writing), taking the lock unless read-only.

        :returns: ``self``.
        :raises JournalLockedError: another process (or journal object) holds the lock.
        :raises JournalError: no such file (read-only), not a journal, or unusable.
        """
        if self._executor is not None:
            raise RuntimeError("the journal is already open")
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inveterate-journal")
        self._executor = executor
        try:
            self._file = await self._run(
                partial(JournalFile, read_only=self._read_only), self._path
            )
        except BaseException:
            self._executor = None
            executor.shutdown(wait=False)
            raise
        return self

    async def close(self) -> None:
        """Close the file and release the lock; safe to call more than once.

        Updates already queued are committed first. Cancelling the caller does not stop
        the closing: it completes, then the cancellation is raised.
        """
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._close())
        closing = self._closing
        cancelled = False
        while not closing.done():
            try:
                await asyncio.shield(closing)
            except asyncio.CancelledError:
                cancelled = True
        self._closing = None
        if cancelled:
            raise asyncio.CancelledError
        closing.result()

    async def _close(self) -> None:
        if self._committer is not None:
            await asyncio.wait([self._committer])
        executor, file = self._executor, self._file
        if executor is None:
            return
        try:
            if file is not None:
                await asyncio.get_running_loop().run_in_executor(executor, file.close)
        finally:
            self._executor = self._file = None
            executor.shutdown(wait=False)

    async def __aenter__(self) -> Journal:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def rows(self) -> list[AdjustmentRow]:
        """Every row, in the order the refs were first added (all in memory: for a large
        journal, use :meth:`iter_rows`)."""
        return [row async for row in self.iter_rows()]

    async def iter_rows(
        self, states: Iterable[AdjustmentState] | None = None
    ) -> AsyncIterator[AdjustmentRow]:
        """Yield the rows (only those in ``states``, if given) in journal order, reading
        a few hundred at a time."""
        wanted = None if states is None else sorted({AdjustmentState(s).value for s in states})
        if wanted is not None and AdjustmentState.UNKNOWN.value in wanted:
            wanted.append(LEGACY_SENDING)  # how version-1 journals store unknown
        where = "position > ?"
        if wanted is not None:
            where += f" AND state IN ({','.join('?' * len(wanted))})"
        after = 0
        while True:
            params = (after, *(wanted or ()))
            rows = await self._run(self._opened().select_after, where, params, CHUNK)
            for position, row in rows:
                yield row
                after = position
            if len(rows) < CHUNK:
                return

    async def report(self) -> AdjustmentReport:
        """Counts and sums per state, and the first rows that are not applied."""
        return await self._run(_report, self._opened())

    # --- used by apply_credits ------------------------------------------------------------

    @property
    def _run_number(self) -> int:
        """This writer's run number (0 when read-only)."""
        return self._opened().run

    async def _new_run(self) -> int:
        """Take the next run number: each ``apply_credits`` call is a run of its own.

        :raises JournalLockedError: another writer took the journal.
        """
        return await self._run(self._opened().new_run)

    async def _merge(self, adjustments: Iterable[CreditAdjustment]) -> None:
        """Add a batch in one transaction (see :mod:`.merge`), reading it a chunk at a
        time on the caller's thread.

        :raises ValueError: a bad item, or a ref given twice; nothing changed.
        :raises JournalConflictError: see :meth:`Merge.finish`; nothing changed.
        """
        merge = Merge(self._opened())
        await self._run(merge.start)
        try:
            chunk: list[CreditAdjustment] = []
            for adjustment in adjustments:
                if not isinstance(adjustment, CreditAdjustment):
                    raise ValueError(f"not a CreditAdjustment: {type(adjustment).__name__}")
                chunk.append(adjustment)
                if len(chunk) == CHUNK:
                    await self._run(merge.add, chunk)
                    chunk = []
            if chunk:
                await self._run(merge.add, chunk)
            await self._run(merge.finish)
        except BaseException:
            await asyncio.shield(self._run(merge.abandon))
            raise

    async def _count_into(self, tally: Tally) -> None:
        """Count every row's state and amount into ``tally``."""
        await self._run(_count, self._opened(), tally)

    async def _rows_by_ref(self, refs: Sequence[str]) -> dict[str, AdjustmentRow]:
        """The rows of these refs that the journal has."""
        where = f"ref IN ({','.join('?' * len(refs))})"
        rows = await self._run(self._opened().select, where, tuple(refs))
        return {row.ref: row for row in rows}

    async def _by_member(
        self, where: str, after: tuple[str, int], limit: int
    ) -> list[tuple[Stored, int]]:
        """See :meth:`JournalFile.by_member`."""
        return await self._run(self._opened().by_member, where, after, limit)

    async def _mark_sent(
        self, ref: str, expected: AdjustmentState, sent_note: str | None, clock: float
    ) -> bool:
        """Durably mark a row unknown before its POST leaves; False if it was not
        ``expected`` (another writer has it)."""
        return await self._commit(self._opened().mark_sent, ref, expected, sent_note, clock)

    async def _unmark(self, previous: Stored) -> bool:
        """Durably undo the mark of a row whose POST never left."""
        return await self._commit(self._opened().unmark, previous)

    async def _record(
        self,
        ref: str,
        expected: AdjustmentState,
        state: AdjustmentState,
        *,
        entry_id: str | None = None,
        error: str | None = None,
        candidates: Sequence[CandidateEntry] = (),
    ) -> bool:
        """Durably set a row's state (if it is ``expected``), and its claimed entry, last
        error or candidates."""
        file = self._opened()
        return await self._commit(file.record, ref, expected, state, entry_id, error, candidates)

    def _record_soon(
        self,
        ref: str,
        expected: AdjustmentState,
        state: AdjustmentState,
        entry_id: str | None = None,
        error: str | None = None,
    ) -> asyncio.Future[bool]:
        """Queue :meth:`_record` for the next group commit without waiting for it."""
        file = self._opened()
        return self._queue(file.record, ref, expected, state, entry_id, error, ())

    async def _member_stored(self, customer_id: str) -> list[Stored]:
        """Every row of a member, with its sending run and time."""
        return await self._run(self._opened().member_stored, customer_id)

    async def _claimed(self, customer_id: str) -> set[str]:
        return await self._run(self._opened().claimed, customer_id)

    # --- the journal's thread -------------------------------------------------------------

    def _opened(self) -> JournalFile:
        if self._executor is None or self._file is None:
            raise RuntimeError("the journal is not open")
        return self._file

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            raise RuntimeError("the journal is not open")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, partial(function, *args))
        except sqlite3.Error as exc:  # a full disk, an I/O error, a broken invariant
            raise JournalError(f"journal {self._path}: {exc}", path=self._path) from exc

    async def _commit(self, function: Callable[..., T], *args: Any) -> T:
        """Run ``function`` in the next group commit; return once that is durable.

        Cancelling the caller does not withdraw the update: it is committed all the same.
        """
        return await self._queue(function, *args)

    def _queue(self, function: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Queue ``function`` for the next group commit: its future is done once that is
        durable (cancelling the future does not withdraw the update)."""
        if self._read_only:
            raise JournalError(f"{self._path} was opened read-only", path=self._path)
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        # A caller cancelled meanwhile never reads the outcome: it is read here instead.
        future.add_done_callback(_retrieve)
        self._queued.append((partial(function, *args), future))
        if self._committer is None or self._committer.done():
            self._committer = asyncio.ensure_future(self._commit_queued())
            self._committer.add_done_callback(self._drop_queued)
        return future

    def _drop_queued(self, committer: asyncio.Task[None]) -> None:
        # A committer cancelled (the loop shutting down) leaves no caller waiting forever.
        # One that ended normally drops nothing: what was queued since then is the next
        # committer's, already started or about to be.
        if not committer.cancelled() or committer is not self._committer:
            return
        queued, self._queued = self._queued, []
        for _, future in queued:
            future.cancel()

    async def _commit_queued(self) -> None:
        while self._queued:
            batch, self._queued = self._queued, []
            try:
                updates = [update for update, _ in batch]
                results = await self._run(self._opened().transaction, updates)
            except asyncio.CancelledError:  # the loop is shutting down
                for _, future in batch:
                    future.cancel()
                raise
            except Exception as exc:  # the commit itself failed: every update with it
                results = [exc] * len(batch)
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():  # its caller was cancelled: committed all the same
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _count(file: JournalFile, tally: Tally) -> None:
    for state, amount in file.states():
        tally.count(_state(state), Decimal(amount))


def _report(file: JournalFile) -> AdjustmentReport:
    tally = Tally()
    _count(file, tally)
    for row in file.select("state != 'applied'", limit=ATTENTION_LIMIT):
        tally.list_attention(row)
    return tally.report()


def _state(text: str) -> AdjustmentState:
    return AdjustmentState.UNKNOWN if text == LEGACY_SENDING else AdjustmentState(text)
