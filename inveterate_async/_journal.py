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
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from functools import partial
from types import TracebackType
from typing import Any, TypeVar

from ._adjustments import (
    AdjustmentReport,
    AdjustmentRow,
    AdjustmentState,
    CandidateEntry,
    CreditAdjustment,
)
from ._errors import JournalError
from ._journal_file import JournalFile

T = TypeVar("T")


class Journal:
    """A bulk adjustment's journal: a SQLite file with one row per ``ref``.

    Pass a path to ``apply_credits`` and it opens and closes the journal; open one yourself
    to read it::

        async with Journal("gold-bonus.sqlite", read_only=True) as journal:
            report = await journal.report()

    :param path: the journal file; created (with ``PATH.lock`` next to it) when opened
        for writing.
    :param read_only: read without taking the lock (while another process applies from
        it, say); the file must exist.
    """

    def __init__(self, path: str | os.PathLike[str], *, read_only: bool = False) -> None:
        self._path = os.fspath(path)
        self._read_only = read_only
        self._executor: ThreadPoolExecutor | None = None
        self._file: JournalFile | None = None
        self._busy = False  # an apply_credits call is using it
        # Row updates waiting for the next group commit, and the task committing them.
        self._queued: list[tuple[Callable[[], Any], asyncio.Future[Any]]] = []
        self._committer: asyncio.Task[None] | None = None

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

        Updates already queued are committed first.
        """
        if self._committer is not None:
            await asyncio.wait([self._committer])
        executor, self._executor = self._executor, None
        if executor is not None:
            if self._file is not None:
                await asyncio.get_running_loop().run_in_executor(executor, self._file.close)
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
        """Every row, in the order the refs were first added."""
        return await self._run(self._opened().select)

    async def report(self) -> AdjustmentReport:
        """Counts and sums per state, and the rows that are not applied."""
        return AdjustmentReport.of(await self.rows())

    # --- used by apply_credits ------------------------------------------------------------

    async def _merge(
        self, adjustments: Sequence[CreditAdjustment], now: datetime, *, write: bool
    ) -> list[AdjustmentRow]:
        """See :meth:`JournalFile.merge`."""
        return await self._run(self._opened().merge, adjustments, now, write)

    async def _recover(self, now: datetime) -> list[AdjustmentRow]:
        """See :meth:`JournalFile.recover`."""
        return await self._run(self._opened().recover, now)

    async def _mark_sending(
        self, ref: str, sent_note: str | None, now: datetime, *, resend: bool = False
    ) -> AdjustmentRow:
        """Durably mark a row as being sent: call before its POST leaves.

        :param resend: it is sent again after it was found not applied.
        """
        return await self._commit(self._opened().mark_sending, ref, sent_note, now, resend)

    async def _record(
        self,
        ref: str,
        state: AdjustmentState,
        now: datetime,
        *,
        entry_id: str | None = None,
        error: str | None = None,
        candidates: Sequence[CandidateEntry] = (),
    ) -> AdjustmentRow:
        """Durably set a row's state, and its claimed entry, last error or candidates."""
        file = self._opened()
        return await self._commit(file.record, ref, state, now, entry_id, error, candidates)

    async def _member_rows(self, customer_id: str) -> list[AdjustmentRow]:
        return await self._run(self._opened().select, "customer_id = ?", (customer_id,))

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
        if self._read_only:
            raise JournalError(f"{self._path} was opened read-only", path=self._path)
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queued.append((partial(function, *args), future))
        if self._committer is None or self._committer.done():
            self._committer = asyncio.ensure_future(self._commit_queued())
            self._committer.add_done_callback(self._drop_queued)
        return await asyncio.shield(future)

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
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)
