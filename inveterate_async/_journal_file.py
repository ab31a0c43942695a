"""The journal's SQLite file: schema, statements and row conversion, used from one thread.

Every method runs on the journal's own thread (see :class:`~inveterate_async.Journal`),
which alone holds the connection. The file uses WAL with ``synchronous=FULL``: a committed
write survives SIGKILL and power loss.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote

from ._adjustments import AdjustmentRow, AdjustmentState, CandidateEntry, CreditAdjustment
from ._errors import JournalError
from ._journal_rows import candidates_json, conflict_error, content, to_row
from ._lock import lock

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


class JournalFile:
    """An open journal file (and, for writing, its lock).

    :param path: the file; created when opened for writing.
    :param read_only: open without the lock, and never write.
    :raises JournalLockedError: for writing, when another holds the lock.
    :raises JournalError: no such file (read-only), not a journal, or unusable.
    """

    def __init__(self, path: str, *, read_only: bool) -> None:
        self.path = path
        self.read_only = read_only
        self._lock_fd: int | None = None
        self.connection: sqlite3.Connection | None = None
        self._blank = False  # read-only, and the file has no schema yet
        try:
            self.connection = self._connect()
            self._prepare(self.connection)
        except (sqlite3.Error, OSError) as exc:
            self.close()
            message = f"cannot use {path} as a journal: {exc}"
            raise JournalError(message, path=path) from exc
        except BaseException:
            self.close()
            raise

    def _connect(self) -> sqlite3.Connection:
        if self.read_only:
            if not os.path.isfile(self.path):
                raise JournalError(f"no journal at {self.path}", path=self.path)
            # Read-write but query-only: on close, the last connection can still clean up
            # the WAL files, which a mode=ro connection would leave behind.
            uri = f"file:{quote(os.path.abspath(self.path))}?mode=rw"
            connection = sqlite3.connect(uri, uri=True, isolation_level=None)
            connection.execute("PRAGMA query_only=ON")
        else:
            self._lock_fd = lock(self.path)
            connection = sqlite3.connect(self.path, isolation_level=None)
        connection.row_factory = sqlite3.Row
        return connection

    def _prepare(self, connection: sqlite3.Connection) -> None:
        application_id = connection.execute("PRAGMA application_id").fetchone()[0]
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        tables = connection.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if tables and application_id != _APPLICATION_ID:
            raise JournalError(f"{self.path} is not an inveterate journal", path=self.path)
        if version > _SCHEMA_VERSION:
            raise JournalError(
                f"{self.path} was written by a newer inveterate-async (journal version "
                f"{version}); upgrade to use it",
                path=self.path,
            )
        if self.read_only:
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

    def close(self) -> None:
        """Close the connection, then release the lock; safe to call more than once."""
        connection, self.connection = self.connection, None
        if connection is not None:
            connection.close()
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            os.close(fd)  # releases the flock

    @property
    def _db(self) -> sqlite3.Connection:
        if self.connection is None:
            raise RuntimeError("the journal is not open")
        return self.connection

    def select(self, where: str = "1", params: tuple[Any, ...] = ()) -> list[AdjustmentRow]:
        """The rows matching an SQL condition, in journal order."""
        if self._blank:
            return []
        query = f"SELECT * FROM adjustments WHERE {where} ORDER BY position"
        return [to_row(record) for record in self._db.execute(query, params)]

    def claimed(self, customer_id: str) -> set[str]:
        """The ledger entries claimed by the member's rows."""
        query = "SELECT entry_id FROM adjustments WHERE customer_id = ? AND entry_id IS NOT NULL"
        return {entry_id for (entry_id,) in self._db.execute(query, (customer_id,))}

    def mark_sending(
        self, ref: str, sent_note: str | None, now: datetime, resend: bool
    ) -> AdjustmentRow:
        """Mark a row as being sent (in the caller's transaction)."""
        stamp = now.isoformat()
        return self._update(ref, now, _SENDING_SQL, (int(resend), sent_note, stamp, stamp))

    def record(
        self,
        ref: str,
        state: AdjustmentState,
        now: datetime,
        entry_id: str | None,
        error: str | None,
        candidates: Sequence[CandidateEntry],
    ) -> AdjustmentRow:
        """Set a row's state and details (in the caller's transaction)."""
        values = (state.value, entry_id, error, candidates_json(candidates))
        return self._update(ref, now, _RECORD_SQL, values)

    def _update(self, ref: str, now: datetime, sql: str, values: tuple[Any, ...]) -> AdjustmentRow:
        self._db.execute(sql, (*values, now.isoformat(), ref))
        (row,) = self.select("ref = ?", (ref,))
        return row

    def transaction(self, updates: list[Callable[[], Any]]) -> list[Any]:
        """Run the updates in one transaction: each one's result, or its error (undone)."""
        results: list[Any] = []
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for update in updates:
                self._db.execute("SAVEPOINT one_update")
                try:
                    results.append(update())
                except sqlite3.Error as exc:
                    self._db.execute("ROLLBACK TO one_update")
                    results.append(JournalError(f"journal {self.path}: {exc}", path=self.path))
                self._db.execute("RELEASE one_update")
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return results

    def recover(self, now: datetime) -> list[AdjustmentRow]:
        """Turn rows left "sending" by a process that died into unknown rows."""
        stranded = self.select("state = ?", (AdjustmentState.SENDING.value,))
        return [self._update(row.ref, now, _RECORD_SQL, _STRANDED) for row in stranded]

    def merge(
        self, adjustments: Sequence[CreditAdjustment], now: datetime, write: bool
    ) -> list[AdjustmentRow]:
        """Add new refs as pending, and take edits of rows nothing can have been applied
        for (never sent, or rejected).

        :returns: every row as it is (``write``) or would be (a dry run) afterwards.
        :raises JournalConflictError: a ref is there with other content; nothing changed.
        """
        current = {row.ref: row for row in self.select()}
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
            raise conflict_error(self.path, conflicts, current)
        if not write:
            for adjustment in edited:
                current[adjustment.ref] = AdjustmentRow(adjustment, AdjustmentState.PENDING)
            pending = (AdjustmentRow(adjustment, AdjustmentState.PENDING) for adjustment in added)
            return [*current.values(), *pending]
        stamp = now.isoformat()
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany(_INSERT_SQL, [(*content(a), stamp, stamp) for a in added])
            self._db.executemany(_EDIT_SQL, [(*content(a)[1:], stamp, a.ref) for a in edited])
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return self.select()


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
