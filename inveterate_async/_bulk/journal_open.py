"""Connecting to a journal file: for writing under its lock, or for reading only.

A reader works on a journal it cannot write (a read-only mount, a copy from a backup):
it tries a read-write but query-only connection (which tidies the WAL files when it is
the last to close), then a read-only one, then an immutable one if no write-ahead log
is waiting to be read.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from urllib.parse import quote

from .._errors import JournalError, JournalLockedError
from .lock import HeldElsewhere, Hold, lock, mark_reader, same_file

_READ_MODES = ("mode=rw", "mode=ro", "mode=ro&immutable=1")


def connect_writer(
    path: str, holder_text: Callable[[sqlite3.Connection], str]
) -> tuple[sqlite3.Connection, Hold]:
    """A connection to the journal at ``path`` (created if missing), holding its lock.

    :raises JournalLockedError: another process, or another journal object, holds it.
    """
    try:
        hold = lock(path)
    except HeldElsewhere as held:
        holder = f"pid {os.getpid()} (this process)" if held.here else _holder(path, holder_text)
        raise JournalLockedError(
            f"journal {path} is in use by {holder}; nothing was sent: wait for it to "
            "finish, or stop it",
            path=path,
            holder=holder,
        ) from None
    try:
        _refuse_links(path, os.stat(path))
        connection = sqlite3.connect(path, isolation_level=None)
        if not same_file(path, hold):
            connection.close()
            raise JournalError(f"{path} was replaced while it was being opened", path=path)
    except BaseException:
        hold.release()
        raise
    return connection, hold


def _holder(path: str, holder_text: Callable[[sqlite3.Connection], str]) -> str:
    try:
        connection, hold = connect_reader(path)
    except (JournalError, sqlite3.Error, OSError):
        return "another process"
    try:
        return holder_text(connection)
    finally:
        connection.close()
        hold.release()


def connect_reader(path: str) -> tuple[sqlite3.Connection, Hold]:
    """A query-only connection to an existing journal file.

    :raises JournalError: no such file, or it cannot be read.
    """
    if not os.path.isfile(path):
        raise JournalError(f"no journal at {path}", path=path)
    _refuse_links(path, os.stat(path))
    hold = mark_reader(path)
    uri = f"file:{quote(os.path.abspath(path))}"
    error: sqlite3.Error | None = None
    for mode in _READ_MODES:
        if "immutable" in mode and _has_log(path):
            break
        try:
            connection = sqlite3.connect(f"{uri}?{mode}", uri=True, isolation_level=None)
        except sqlite3.Error as exc:
            error = exc
            continue
        try:
            connection.execute("PRAGMA query_only=ON")
            connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.Error as exc:
            connection.close()
            error = exc
            continue
        return connection, hold
    hold.release()
    raise JournalError(f"cannot read the journal {path}: {error}", path=path)


def _refuse_links(path: str, stat: os.stat_result) -> None:
    """Refuse a journal file with more than one name: SQLite names its write-ahead log
    after the name it was opened by, so two names would be two journals' worth of
    uncommitted state over one file."""
    if stat.st_nlink > 1:
        raise JournalError(
            f"journal {path} has {stat.st_nlink} hard links; a journal must have one name "
            f"(its write-ahead log is kept beside that name): remove the other links "
            f"(find / -samefile {path}) and run again",
            path=path,
        )


def _has_log(path: str) -> bool:
    try:
        return os.path.getsize(f"{path}-wal") > 0
    except OSError:
        return False
