"""A shard's journal: the rows read so far and where each member's ledger stands.

One SQLite file per shard, in WAL mode: pages' rows and their members' new positions are
committed together, a few dozen pages at a time, so a worker killed at any point leaves a
journal that is before or after each page, never in between. The next run resumes every
member from its position: at most the pages not yet committed are read again.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from .._models import LedgerPosition

_SCHEMA = """
CREATE TABLE IF NOT EXISTS member (
    idx INTEGER PRIMARY KEY,
    member_id TEXT NOT NULL UNIQUE,
    position TEXT NOT NULL,
    rows INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS line (
    idx INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    text TEXT NOT NULL,
    PRIMARY KEY (idx, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_SUFFIXES = ("", "-wal", "-shm", "-journal")


class ShardJournal:
    """The journal of one shard, held by one worker at a time.

    The database is opened in exclusive locking mode: a second process opening it gets
    :class:`sqlite3.OperationalError` ("database is locked") instead of sharing it, and no
    shared-memory index is used, so it also works on a network file system.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # Used by one task at a time, possibly from a worker thread (to write the shard).
        # timeout=0: a journal held by another run is reported at once, not waited for.
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=0)
        try:
            self._db.execute("PRAGMA locking_mode=EXCLUSIVE")
            self._db.execute("PRAGMA journal_mode=WAL")
            # A committed page survives the process being killed; a power cut may lose
            # the last pages, which are then read again.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except BaseException:
            self._db.close()
            raise
        self._index: dict[str, int] = {}
        self._rows: dict[int, int] = {}
        self._pending_rows: list[tuple[int, int, str]] = []
        self._pending_positions: dict[int, tuple[str, int]] = {}

    def close(self) -> None:
        """Close the database (the file stays for the next run)."""
        self._db.close()

    def delete(self) -> None:
        """Close and remove the journal's files."""
        self.close()
        remove_journal(self.path)

    def begin_run(self, member_ids: Sequence[str]) -> int:
        """Register the shard's members (new ones at START) and count a run without progress.

        :returns: the runs in a row, this one included, that have read nothing yet.
        :raises ValueError: if the journal belongs to a shard with other members.
        """
        with self._transaction():
            self._db.executemany(
                "INSERT OR IGNORE INTO member (idx, member_id, position) VALUES (?, ?, ?)",
                (
                    (idx, member, LedgerPosition.START.to_json())
                    for idx, member in enumerate(member_ids)
                ),
            )
            stored = self._db.execute(
                "SELECT member_id, idx, rows FROM member ORDER BY idx"
            ).fetchall()
            if [member for member, _, _ in stored] != list(member_ids):
                raise ValueError(f"{self.path} is the journal of a shard with other members")
            stalled = self._meta_int("stalled_runs") + 1
            self._set_meta("stalled_runs", str(stalled))
        self._index = {member: idx for member, idx, _ in stored}
        self._rows = {idx: rows for _, idx, rows in stored}
        return stalled

    def unfinished(self) -> list[tuple[str, LedgerPosition]]:
        """The members not read to the end, in shard order, with their positions."""
        found = self._db.execute("SELECT member_id, position FROM member ORDER BY idx")
        positions = ((member, LedgerPosition.from_json(text)) for member, text in found)
        return [(member, position) for member, position in positions if not position.done]

    def record_page(self, member_id: str, lines: Iterable[str], position: LedgerPosition) -> None:
        """Take a page's rows and the member's position after it; :meth:`commit` stores
        them (pages are kept whole: a crash loses whole pages, which are read again)."""
        idx = self._index[member_id]
        first = self._rows[idx]
        rows = [(idx, first + offset, text) for offset, text in enumerate(lines)]
        self._rows[idx] = first + len(rows)
        self._pending_rows.extend(rows)
        self._pending_positions[idx] = (position.to_json(), self._rows[idx])

    @property
    def pending(self) -> int:
        """Members with pages taken but not committed yet."""
        return len(self._pending_positions)

    def commit(self) -> None:
        """Store the pages taken since the last commit, in one transaction."""
        if not self._pending_positions:
            return
        with self._transaction():
            self._db.executemany(
                "INSERT INTO line (idx, seq, text) VALUES (?, ?, ?)", self._pending_rows
            )
            self._db.executemany(
                "UPDATE member SET position = ?, rows = ? WHERE idx = ?",
                ((text, rows, idx) for idx, (text, rows) in self._pending_positions.items()),
            )
            self._set_meta("stalled_runs", "0")
        self._pending_rows.clear()
        self._pending_positions.clear()

    def stalled_runs(self) -> int:
        """Runs in a row, this one included, that have read nothing so far."""
        return self._meta_int("stalled_runs")

    def record_error(self, text: str) -> None:
        """Remember the last failure, for the message when the shard is given up."""
        with self._transaction():
            self._set_meta("last_error", text)

    def last_error(self) -> str | None:
        """The last failure recorded, if any."""
        found = self._db.execute("SELECT value FROM meta WHERE key = 'last_error'").fetchone()
        return None if found is None else str(found[0])

    @property
    def row_count(self) -> int:
        """The rows stored for the whole shard."""
        return sum(self._rows.values())

    def write_rows(self, out: TextIO) -> int:
        """Write every row, members in shard order and each ledger in order.

        :returns: the number of rows written.
        """
        count = 0
        for (text,) in self._db.execute("SELECT text FROM line ORDER BY idx, seq"):
            out.write(text)
            count += 1
        return count

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _meta_int(self, key: str) -> int:
        found = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return 0 if found is None else int(found[0])

    def _set_meta(self, key: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))


def remove_journal(path: Path) -> None:
    """Remove a journal's database and its WAL files, where they exist."""
    for suffix in _SUFFIXES:
        path.with_name(path.name + suffix).unlink(missing_ok=True)
