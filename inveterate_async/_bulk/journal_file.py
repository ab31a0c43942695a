"""The journal's SQLite file: schema, compare-and-set statements, used from one thread.

Every method runs on the journal's own thread (see :class:`~inveterate_async.Journal`),
which alone holds the connection. The file uses WAL with ``synchronous=FULL``: a committed
write survives SIGKILL and power loss. Each writer that opens the file takes the lock on
the file itself, and each run a new run number; every state change names the row's
expected state, and every transaction first checks (under SQLite's write lock) that the
run number is still this run's, so a writer that lost the journal to another changes
nothing.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any

from .._errors import JournalError, JournalLockedError
from .adjustments import AdjustmentRow, AdjustmentState, CandidateEntry
from .journal_open import connect_reader, connect_writer
from .lock import HeldElsewhere, Hold, legacy_lock
from .rows import candidates_json, to_row
from .stored import Stored

_APPLICATION_ID = 0x49564A31  # "IVJ1": marks the file as an inveterate journal
SCHEMA_VERSION = 2
_COLUMNS = """
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
    run           INTEGER NOT NULL DEFAULT 0,
    sent_run      INTEGER,
    sent_clock    REAL,
    resent_run    INTEGER,
    UNIQUE (customer_id, entry_id)
"""
# run: the last run whose batch listed the row; sent_run and sent_clock: the run that last
# sent it and when, on that run's monotonic clock; resent_run: the last run that re-sent it.
_HOLDER = (
    "CREATE TABLE holder (only INTEGER PRIMARY KEY CHECK (only = 1), "
    "run INTEGER NOT NULL, pid INTEGER, host TEXT, since TEXT);"
    "INSERT INTO holder VALUES (1, 0, NULL, NULL, NULL);"
)
_SCHEMA = (
    f"CREATE TABLE adjustments ({_COLUMNS});"
    "CREATE INDEX adjustments_by_member ON adjustments (customer_id);" + _HOLDER
)
_UPGRADE_1 = (
    "ALTER TABLE adjustments ADD COLUMN run INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE adjustments ADD COLUMN sent_run INTEGER;"
    "ALTER TABLE adjustments ADD COLUMN sent_clock REAL;"
    "ALTER TABLE adjustments ADD COLUMN resent_run INTEGER;"
    "UPDATE adjustments SET state = 'unknown' WHERE state = 'sending';" + _HOLDER
)


def wall_time() -> str:
    """The time now, as stored."""
    return datetime.now(timezone.utc).isoformat()


class JournalFile:
    """An open journal file (and, for writing, its lock and run number).

    :param path: the file; created when opened for writing.
    :param read_only: open without the lock, and never write.
    :raises JournalLockedError: for writing, when another holds the lock.
    :raises JournalError: no such file (read-only), not a journal, or unusable.
    """

    def __init__(self, path: str, *, read_only: bool) -> None:
        self.path = path
        self.read_only = read_only
        self.run = 0
        self.connection: sqlite3.Connection | None = None
        self._hold: Hold | None = None
        self._blank = False  # read-only, and the file has no schema yet
        # SQLite names the write-ahead log after the path: through a symlink, the file's
        # own name, so that every name reaches the same log.
        real = os.path.realpath(path)
        try:
            if read_only:
                self.connection, self._hold = connect_reader(real)
            else:
                self.connection, self._hold = connect_writer(real, self._holder_text)
            self.connection.row_factory = sqlite3.Row
            self._prepare(self.connection)
        except (sqlite3.Error, OSError) as exc:
            self.close()
            message = f"cannot use {path} as a journal: {exc}"
            raise JournalError(message, path=path) from exc
        except BaseException:
            self.close()
            raise

    def _holder_text(self, connection: sqlite3.Connection) -> str:
        try:
            found = connection.execute("SELECT pid, host, since FROM holder").fetchone()
        except sqlite3.Error:
            found = None
        if found is None or found[0] is None:
            return "another process"
        return f"pid {found[0]} on {found[1]} since {found[2]}"

    def _prepare(self, connection: sqlite3.Connection) -> None:
        application_id = connection.execute("PRAGMA application_id").fetchone()[0]
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        tables = connection.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if tables and application_id != _APPLICATION_ID:
            raise JournalError(f"{self.path} is not an inveterate journal", path=self.path)
        if version > SCHEMA_VERSION:
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
            script = f"{_SCHEMA}PRAGMA application_id={_APPLICATION_ID};"
        elif version < SCHEMA_VERSION:
            script = _UPGRADE_1
        else:
            script = ""
        since = datetime.now(timezone.utc).isoformat(timespec="seconds")
        script = (
            f"BEGIN IMMEDIATE;{script}PRAGMA user_version={SCHEMA_VERSION};"
            f"UPDATE holder SET run = run + 1, pid = {os.getpid()}, "
            f"host = {_quote(socket.gethostname())}, since = {_quote(since)};COMMIT;"
        )
        if tables and version < SCHEMA_VERSION:
            self._upgrade(connection, script)
        else:
            connection.executescript(script)
        self.run = connection.execute("SELECT run FROM holder").fetchone()[0]

    def _upgrade(self, connection: sqlite3.Connection, script: str) -> None:
        """Upgrade a version-1 journal, unless a run of an older release is using it."""
        # An older release locked "<the name it was given>.lock": the name given here, and
        # the file's own name (this one may have come through a symlink).
        names = dict.fromkeys([self.path, os.path.realpath(self.path)])
        try:
            with contextlib.ExitStack() as held_locks:
                for name in names:
                    held_locks.enter_context(legacy_lock(name))
                connection.executescript(script)
        except HeldElsewhere as held:
            holder = held.holder or "a run of an earlier inveterate-async"
            raise JournalLockedError(
                f"journal {self.path} is in use by {holder} (its {self.path}.lock); "
                "nothing was sent: wait for it to finish, or stop it",
                path=self.path,
                holder=holder,
            ) from None

    def new_run(self) -> int:
        """Take the next run number for one ``apply_credits`` call.

        :raises JournalLockedError: another writer took the journal.
        """
        self.begin()
        try:
            taken = self.db.execute(
                "UPDATE holder SET run = run + 1 WHERE run = ?", (self.run,)
            ).rowcount
            if taken != 1:
                raise self._lost()
            self.commit()
        except BaseException:
            self.rollback()
            raise
        self.run += 1
        return self.run

    def _lost(self) -> JournalLockedError:
        holder = self._holder_text(self.db)
        return JournalLockedError(
            f"journal {self.path} was opened for writing by another run ({holder}); "
            "this run stopped",
            path=self.path,
            holder=holder,
        )

    def close(self) -> None:
        """Close the connection, then release the lock; safe to call more than once."""
        connection, self.connection = self.connection, None
        try:
            if connection is not None:
                connection.close()
        finally:
            hold, self._hold = self._hold, None
            if hold is not None:
                hold.release()

    @property
    def db(self) -> sqlite3.Connection:
        """The open connection."""
        if self.connection is None:
            raise RuntimeError("the journal is not open")
        return self.connection

    # --- reading --------------------------------------------------------------------------

    def select(
        self, where: str = "1", params: Sequence[Any] = (), limit: int = -1
    ) -> list[AdjustmentRow]:
        """The rows matching an SQL condition, in journal order."""
        if self._blank:
            return []
        query = f"SELECT * FROM adjustments WHERE {where} ORDER BY position LIMIT ?"
        return [to_row(record) for record in self.db.execute(query, (*params, limit))]

    def select_after(
        self, where: str, params: Sequence[Any], limit: int
    ) -> list[tuple[int, AdjustmentRow]]:
        """Rows matching ``where`` with their positions, in journal order."""
        if self._blank:
            return []
        query = f"SELECT * FROM adjustments WHERE {where} ORDER BY position LIMIT ?"
        return [(r["position"], to_row(r)) for r in self.db.execute(query, (*params, limit))]

    def by_member(self, where: str, after: tuple[str, int], limit: int) -> list[tuple[Stored, int]]:
        """Up to ``limit`` rows matching ``where`` (with ``:run`` for this run) after
        ``after`` in (member, position) order, each with its position."""
        if self._blank:
            return []
        query = (
            "SELECT * FROM adjustments WHERE (customer_id, position) > (:member, :position) "
            f"AND ({where}) ORDER BY customer_id, position LIMIT :limit"
        )
        params = {"member": after[0], "position": after[1], "limit": limit, "run": self.run}
        return [(_stored(r), r["position"]) for r in self.db.execute(query, params)]

    def member_stored(self, customer_id: str) -> list[Stored]:
        """Every row of a member, in journal order."""
        query = "SELECT * FROM adjustments WHERE customer_id = ? ORDER BY position"
        return [_stored(r) for r in self.db.execute(query, (customer_id,))]

    def claimed(self, customer_id: str) -> set[str]:
        """The ledger entries claimed by the member's rows."""
        query = "SELECT entry_id FROM adjustments WHERE customer_id = ? AND entry_id IS NOT NULL"
        return {entry_id for (entry_id,) in self.db.execute(query, (customer_id,))}

    def states(self) -> sqlite3.Cursor:
        """``(state, amount)`` of every row, for counting."""
        if self._blank:
            return self.db.execute("SELECT NULL, NULL WHERE 0")
        return self.db.execute("SELECT state, amount FROM adjustments")

    # --- compare-and-set updates (only inside :meth:`transaction`, which checks the run) ---

    def mark_sent(
        self, ref: str, expected: AdjustmentState, sent_note: str | None, clock: float
    ) -> bool:
        """Mark a row unknown before its POST leaves; False if it is not ``expected``."""
        resend = expected is AdjustmentState.NOT_APPLIED
        stamp = wall_time()
        sql = (
            "UPDATE adjustments SET state = 'unknown', attempts = attempts + 1, "
            "resends = resends + ?, sent_note = ?, first_sent_at = coalesce(first_sent_at, ?), "
            "last_sent_at = ?, sent_run = ?, sent_clock = ?, "
            "resent_run = CASE WHEN ? THEN ? ELSE resent_run END, error = NULL, "
            "updated_at = ? WHERE ref = ? AND state = ?"
        )
        values = (int(resend), sent_note, stamp, stamp, self.run, clock, int(resend), self.run)
        return self._changed(sql, (*values, stamp, ref, expected.value))

    def unmark(self, previous: Stored) -> bool:
        """Undo :meth:`mark_sent` of a row whose POST never left; False if the row is not
        unknown (then nothing was marked)."""
        row = previous.row
        sql = (
            "UPDATE adjustments SET state = ?, attempts = ?, resends = ?, sent_note = ?, "
            "first_sent_at = ?, last_sent_at = ?, sent_run = ?, sent_clock = ?, "
            "resent_run = ?, error = ?, "
            "updated_at = ? WHERE ref = ? AND state = 'unknown'"
        )
        values = (
            row.state.value,
            row.attempts,
            row.resends,
            row.sent_note,
            _stamp(row.first_sent_at),
            _stamp(row.last_sent_at),
            previous.sent_run,
            previous.sent_clock,
            previous.resent_run,
            row.error,
            wall_time(),
        )
        return self._changed(sql, (*values, row.ref))

    def record(
        self,
        ref: str,
        expected: AdjustmentState,
        state: AdjustmentState,
        entry_id: str | None,
        error: str | None,
        candidates: Sequence[CandidateEntry],
    ) -> bool:
        """Set a row's state and details; False if it is not ``expected``."""
        sql = (
            "UPDATE adjustments SET state = ?, entry_id = coalesce(?, entry_id), "
            "error = coalesce(?, error), candidates = ?, updated_at = ? "
            "WHERE ref = ? AND state = ?"
        )
        values = (state.value, entry_id, error, candidates_json(candidates), wall_time())
        return self._changed(sql, (*values, ref, expected.value))

    def _changed(self, sql: str, params: tuple[Any, ...]) -> bool:
        return self.db.execute(sql, params).rowcount == 1

    def transaction(self, updates: list[Callable[[], Any]]) -> list[Any]:
        """Run the updates (one statement each) in one transaction: each one's result, or
        the error of one that broke a constraint (undone).

        :raises JournalLockedError: another writer took the journal; nothing changed.
        """
        results: list[Any] = []
        self.begin()
        try:
            if self.db.execute("SELECT run FROM holder").fetchone()[0] != self.run:
                raise self._lost()
            for update in updates:
                # Each update is one statement: one that breaks a constraint is undone by
                # SQLite alone, and the transaction goes on. Any other error fails them all.
                try:
                    results.append(update())
                except sqlite3.IntegrityError as exc:
                    if not self.db.in_transaction:
                        raise
                    results.append(JournalError(f"journal {self.path}: {exc}", path=self.path))
            self.commit()
        except BaseException:
            self.rollback()
            raise
        return results

    def begin(self) -> None:
        """Start a write transaction."""
        self.db.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        """Commit the transaction."""
        self.db.execute("COMMIT")

    def rollback(self) -> None:
        """Undo the transaction, if one is open; a failing ROLLBACK is not raised, so
        that the error that caused it is the one reported."""
        if self.connection is not None and self.connection.in_transaction:
            # SQLite may have rolled back already (a full disk, an I/O error).
            with contextlib.suppress(sqlite3.Error):
                self.connection.execute("ROLLBACK")


def _stored(record: sqlite3.Row) -> Stored:
    return Stored(to_row(record), record["sent_run"], record["sent_clock"], record["resent_run"])


def _stamp(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
