"""The journal file's schema: its tables, the upgrade from version 1, and preparing a
connection (the checks, WAL with ``synchronous=FULL``, a run number for a writer)."""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
from datetime import datetime, timezone

from .._errors import JournalError, JournalLockedError
from .lock import HeldElsewhere, legacy_lock

APPLICATION_ID = 0x49564A31  # "IVJ1": marks the file as an inveterate journal
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


def holder_text(connection: sqlite3.Connection) -> str:
    """Who holds the journal, as its writer recorded it."""
    try:
        found = connection.execute("SELECT pid, host, since FROM holder").fetchone()
    except sqlite3.Error:
        found = None
    if found is None or found[0] is None:
        return "another process"
    return f"pid {found[0]} on {found[1]} since {found[2]}"


def prepare(connection: sqlite3.Connection, path: str, *, read_only: bool) -> tuple[int, bool]:
    """Check the file is a journal this version can use; for writing, create or
    upgrade its schema and take a run number.

    :returns: the run number (0 when read-only) and whether the file has no schema.
    :raises JournalError: not a journal, or a newer version's.
    :raises JournalLockedError: a run of an older release is using it.
    """
    application_id = connection.execute("PRAGMA application_id").fetchone()[0]
    version = connection.execute("PRAGMA user_version").fetchone()[0]
    tables = connection.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    if tables and application_id != APPLICATION_ID:
        raise JournalError(f"{path} is not an inveterate journal", path=path)
    if version > SCHEMA_VERSION:
        raise JournalError(
            f"{path} was written by a newer inveterate-async (journal version "
            f"{version}); upgrade to use it",
            path=path,
        )
    if read_only:
        # No tables: new, or its creator died before the schema was committed.
        return 0, not tables
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    if not tables:
        script = f"{_SCHEMA}PRAGMA application_id={APPLICATION_ID};"
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
        _upgrade(connection, path, script)
    else:
        connection.executescript(script)
    run: int = connection.execute("SELECT run FROM holder").fetchone()[0]
    return run, False


def _upgrade(connection: sqlite3.Connection, path: str, script: str) -> None:
    """Upgrade a version-1 journal, unless a run of an older release is using it."""
    # An older release locked "<the name it was given>.lock": the name given here, and
    # the file's own name (this one may have come through a symlink).
    names = dict.fromkeys([path, os.path.realpath(path)])
    try:
        with contextlib.ExitStack() as held_locks:
            for name in names:
                held_locks.enter_context(legacy_lock(name))
            connection.executescript(script)
    except HeldElsewhere as held:
        holder = held.holder or "a run of an earlier inveterate-async"
        raise JournalLockedError(
            f"journal {path} is in use by {holder} (its {path}.lock); "
            "nothing was sent: wait for it to finish, or stop it",
            path=path,
            holder=holder,
        ) from None


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
