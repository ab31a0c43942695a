"""The SQLite journal of bulk adjustments: one row per ref, crash-safe, one writer at a time.

Every call runs on the journal's own thread, which alone holds the connection: calls run
in order, and a write whose caller was cancelled still completes. The file uses WAL with
``synchronous=FULL``, so a committed write survives SIGKILL and power loss. Row updates
that queue up while a commit is under way are committed together (one fsync for many
rows); each caller still resumes only once its own update is durable. A writer holds an
exclusive ``flock`` on ``PATH.lock``, which the OS releases when the process ends, however
it ends.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import socket
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from decimal import Decimal
from functools import partial
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

from ._adjustments import (
    AdjustmentReport,
    AdjustmentRow,
    AdjustmentState,
    CandidateEntry,
    CreditAdjustment,
)
from ._errors import JournalConflictError, JournalError, JournalLockedError

T = TypeVar("T")

_APPLICATION_ID = 0x49564A31  # "IVJ1": marks the file as an inveterate journal
_SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE adjustments (
    position      INTEGER PRIMARY KEY,
    ref           TEXT NOT NULL UNIQUE,
    customer_id   TEXT NOT NULL,
    amount        TEXT NOT NULL,
    note          TEXT,
    force         INTEGER,
    state         TEXT NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    resends       INTEGER NOT NULL DEFAULT 0,
    sent_note     TEXT,
    first_sent_at TEXT,
    last_sent_at  TEXT,
    entry_id      TEXT,
    error         TEXT,
    candidates    TEXT,
    added_at      TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    UNIQUE (customer_id, entry_id)
);
CREATE INDEX adjustments_by_member ON adjustments (customer_id);
"""
_EDITABLE = frozenset({AdjustmentState.PENDING, AdjustmentState.REJECTED})
_LISTED_CONFLICTS = 5


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
        self._connection: sqlite3.Connection | None = None
        self._lock_fd: int | None = None
        self._busy = False  # an apply_credits call is using it
        self._blank = False  # read-only, and the file has no schema yet
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
            await self._run(self._open)
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
            await asyncio.get_running_loop().run_in_executor(executor, self._close)
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
        return await self._run(self._select, "1", ())

    async def report(self) -> AdjustmentReport:
        """Counts and sums per state, and the rows that are not applied."""
        return AdjustmentReport.of(await self.rows())

    # --- used by apply_credits ------------------------------------------------------------

    async def _merge(
        self, adjustments: Sequence[CreditAdjustment], now: datetime, *, write: bool
    ) -> list[AdjustmentRow]:
        """Add new refs as pending and take edits of rows nothing can have been applied for.

        :returns: every row as it is (``write``) or would be (dry run) afterwards.
        :raises JournalConflictError: a ref is there with other content; nothing changed.
        """
        return await self._run(self._merge_rows, adjustments, now, write)

    async def _recover(self, now: datetime) -> list[AdjustmentRow]:
        """Turn rows left "sending" by a process that died into unknown rows."""
        return await self._run(self._recover_rows, now)

    async def _mark_sending(
        self, ref: str, sent_note: str | None, now: datetime, *, resend: bool = False
    ) -> AdjustmentRow:
        """Durably mark a row as being sent: call before its POST leaves.

        :param resend: it is sent again after it was found not applied.
        """
        stamp = now.isoformat()
        values = (int(resend), sent_note, stamp, stamp)
        return await self._commit(self._update, ref, now, _SENDING_SQL, values)

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
        """Set a row's state, and its claimed entry, last error or review candidates."""
        values = (state.value, entry_id, error, _candidates_json(candidates))
        return await self._commit(self._update, ref, now, _RECORD_SQL, values)

    async def _member_rows(self, customer_id: str) -> list[AdjustmentRow]:
        return await self._run(self._select, "customer_id = ?", (customer_id,))

    async def _claimed(self, customer_id: str) -> set[str]:
        return await self._run(self._claimed_entries, customer_id)

    async def _commit(self, function: Callable[..., T], *args: Any) -> T:
        """Run ``function`` in the next group commit; return once that is durable.

        Cancelling the caller does not withdraw the update: it is committed all the same.
        """
        if self._executor is None:
            raise RuntimeError("the journal is not open")
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
                results = await self._run(self._transaction, [update for update, _ in batch])
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

    # --- on the journal's thread ----------------------------------------------------------

    def _transaction(self, updates: list[Callable[[], Any]]) -> list[Any]:
        """Run the updates in one transaction; each one's result, or its error (undone)."""
        results: list[Any] = []
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for update in updates:
                self._db.execute("SAVEPOINT one_update")
                try:
                    results.append(update())
                except sqlite3.Error as exc:
                    self._db.execute("ROLLBACK TO one_update")
                    results.append(JournalError(f"journal {self._path}: {exc}", path=self._path))
                self._db.execute("RELEASE one_update")
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return results

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            raise RuntimeError("the journal is not open")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, partial(function, *args))
        except sqlite3.Error as exc:  # a full disk, an I/O error, a broken invariant
            raise JournalError(f"journal {self._path}: {exc}", path=self._path) from exc

    def _open(self) -> None:
        try:
            if self._read_only:
                if not os.path.isfile(self._path):
                    raise JournalError(f"no journal at {self._path}", path=self._path)
                # Read-write but query-only: on close, the last connection can still
                # clean up the WAL files, which a mode=ro connection would leave behind.
                uri = f"file:{quote(os.path.abspath(self._path))}?mode=rw"
                self._connection = sqlite3.connect(uri, uri=True, isolation_level=None)
                self._connection.execute("PRAGMA query_only=ON")
            else:
                self._lock()
                self._connection = sqlite3.connect(self._path, isolation_level=None)
            self._connection.row_factory = sqlite3.Row
            self._prepare(self._connection)
        except (sqlite3.Error, OSError) as exc:
            self._close()
            raise JournalError(
                f"cannot use {self._path} as a journal: {exc}", path=self._path
            ) from exc
        except BaseException:
            self._close()
            raise

    def _prepare(self, connection: sqlite3.Connection) -> None:
        application_id = connection.execute("PRAGMA application_id").fetchone()[0]
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        tables = connection.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if tables and application_id != _APPLICATION_ID:
            raise JournalError(f"{self._path} is not an inveterate journal", path=self._path)
        if version > _SCHEMA_VERSION:
            raise JournalError(
                f"{self._path} was written by a newer inveterate-async (journal version "
                f"{version}); upgrade to use it",
                path=self._path,
            )
        if self._read_only:
            # No tables: new, or its creator died before the schema was committed.
            self._blank = not tables
            return
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        if not tables:
            connection.executescript(
                f"BEGIN IMMEDIATE;{_SCHEMA}PRAGMA application_id={_APPLICATION_ID};"
                f"PRAGMA user_version={_SCHEMA_VERSION};COMMIT;"
            )

    def _lock(self) -> None:
        fd = os.open(f"{self._path}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 512, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise JournalLockedError(
                f"journal {self._path} is in use by {holder}; nothing was sent: wait for "
                "it to finish, or stop it",
                path=self._path,
                holder=holder,
            ) from None
        self._lock_fd = fd
        since = datetime.now(timezone.utc).isoformat(timespec="seconds")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {since}\n".encode(), 0)

    def _close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            os.close(fd)  # releases the flock

    @property
    def _db(self) -> sqlite3.Connection:
        if self._connection is None:  # pragma: no cover - _run checks that it is open
            raise RuntimeError("the journal is not open")
        return self._connection

    def _select(self, where: str, params: tuple[Any, ...]) -> list[AdjustmentRow]:
        if self._blank:
            return []
        query = f"SELECT * FROM adjustments WHERE {where} ORDER BY position"
        return [_row(record) for record in self._db.execute(query, params)]

    def _claimed_entries(self, customer_id: str) -> set[str]:
        query = "SELECT entry_id FROM adjustments WHERE customer_id = ? AND entry_id IS NOT NULL"
        return {entry_id for (entry_id,) in self._db.execute(query, (customer_id,))}

    def _update(self, ref: str, now: datetime, sql: str, values: tuple[Any, ...]) -> AdjustmentRow:
        self._db.execute(sql, (*values, now.isoformat(), ref))
        (row,) = self._select("ref = ?", (ref,))
        return row

    def _recover_rows(self, now: datetime) -> list[AdjustmentRow]:
        stranded = self._select("state = ?", (AdjustmentState.SENDING.value,))
        return [self._update(row.ref, now, _RECORD_SQL, _STRANDED) for row in stranded]

    def _merge_rows(
        self, adjustments: Sequence[CreditAdjustment], now: datetime, write: bool
    ) -> list[AdjustmentRow]:
        current = {row.ref: row for row in self._select("1", ())}
        added: list[CreditAdjustment] = []
        edited: list[CreditAdjustment] = []
        conflicts: list[CreditAdjustment] = []
        for adjustment in adjustments:
            row = current.get(adjustment.ref)
            if row is None:
                added.append(adjustment)
            elif not row.adjustment.same_content(adjustment):
                (edited if row.state in _EDITABLE else conflicts).append(adjustment)
        if conflicts:
            raise _conflict_error(self._path, conflicts, current)
        if not write:
            for adjustment in edited:
                current[adjustment.ref] = AdjustmentRow(adjustment, AdjustmentState.PENDING)
            pending = (AdjustmentRow(adjustment, AdjustmentState.PENDING) for adjustment in added)
            return [*current.values(), *pending]
        stamp = now.isoformat()
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany(_INSERT_SQL, [(*_content(a), stamp, stamp) for a in added])
            self._db.executemany(_EDIT_SQL, [(*_content(a)[1:], stamp, a.ref) for a in edited])
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return self._select("1", ())


_INSERT_SQL = (
    "INSERT INTO adjustments (ref, customer_id, amount, note, force, state, added_at, "
    "updated_at) VALUES (?, ?, ?, ?, ?, 'pending', ?, ?)"
)
# An edited row starts again: nothing was applied for it (never sent, or rejected).
_EDIT_SQL = (
    "UPDATE adjustments SET customer_id = ?, amount = ?, note = ?, force = ?, "
    "state = 'pending', sent_note = NULL, candidates = NULL, updated_at = ? WHERE ref = ?"
)
_SENDING_SQL = (
    "UPDATE adjustments SET state = 'sending', attempts = attempts + 1, "
    "resends = resends + ?, sent_note = ?, "
    "first_sent_at = coalesce(first_sent_at, ?), last_sent_at = ?, updated_at = ? "
    "WHERE ref = ?"
)
_RECORD_SQL = (
    "UPDATE adjustments SET state = ?, entry_id = coalesce(?, entry_id), "
    "error = coalesce(?, error), candidates = ?, updated_at = ? WHERE ref = ?"
)
_STRANDED = (
    AdjustmentState.UNKNOWN.value,
    None,
    "the process stopped while sending: it may have been applied",
    None,
)


def _content(adjustment: CreditAdjustment) -> tuple[Any, ...]:
    force = None if adjustment.force is None else int(adjustment.force)
    return (
        adjustment.ref,
        adjustment.customer_id,
        str(adjustment.amount),
        adjustment.note,
        force,
    )


def _row(record: sqlite3.Row) -> AdjustmentRow:
    force = record["force"]
    adjustment = CreditAdjustment(
        ref=record["ref"],
        customer_id=record["customer_id"],
        amount=Decimal(record["amount"]),
        note=record["note"],
        force=None if force is None else bool(force),
    )
    return AdjustmentRow(
        adjustment,
        AdjustmentState(record["state"]),
        attempts=record["attempts"],
        resends=record["resends"],
        sent_note=record["sent_note"],
        first_sent_at=_time(record["first_sent_at"]),
        last_sent_at=_time(record["last_sent_at"]),
        entry_id=record["entry_id"],
        error=record["error"],
        candidates=_candidates(record["candidates"]),
    )


def _time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _candidates_json(candidates: Iterable[CandidateEntry]) -> str | None:
    items = [
        {
            "id": c.entry_id,
            "amount": str(c.amount),
            "note": c.note,
            "createdAt": None if c.created_at is None else c.created_at.isoformat(),
        }
        for c in candidates
    ]
    return json.dumps(items, ensure_ascii=False) if items else None


def _candidates(text: str | None) -> tuple[CandidateEntry, ...]:
    if text is None:
        return ()
    return tuple(
        CandidateEntry(item["id"], Decimal(item["amount"]), item["note"], _time(item["createdAt"]))
        for item in json.loads(text)
    )


def _conflict_error(
    path: str, conflicts: Sequence[CreditAdjustment], current: dict[str, AdjustmentRow]
) -> JournalConflictError:
    lines = []
    for adjustment in conflicts[:_LISTED_CONFLICTS]:
        row = current[adjustment.ref]
        lines.append(f"{adjustment.ref} ({row.state}: {_differences(row.adjustment, adjustment)})")
    more = len(conflicts) - _LISTED_CONFLICTS
    listed = "; ".join(lines) + (f"; and {more} more" if more > 0 else "")
    return JournalConflictError(
        f"{len(conflicts)} refs are already in {path} with different content, and may have "
        f"been applied, so they cannot be edited (use new refs): {listed}",
        path=path,
        refs=tuple(adjustment.ref for adjustment in conflicts),
    )


def _differences(old: CreditAdjustment, new: CreditAdjustment) -> str:
    fields = [
        ("customer_id", old.customer_id, new.customer_id, old.customer_id == new.customer_id),
        ("amount", str(old.amount), str(new.amount), old.amount == new.amount),
        ("note", old.note, new.note, (old.note or None) == (new.note or None)),
        ("force", old.force, new.force, bool(old.force) == bool(new.force)),
    ]
    return ", ".join(f"{name} {a!r} -> {b!r}" for name, a, b, same in fields if not same)
