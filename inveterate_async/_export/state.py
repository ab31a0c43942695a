"""The state file of an export (``state=``, ``--state``): where it stands, in SQLite.

Why SQLite, in WAL mode (the project's rule for durable local state): one transaction
records the byte length of the partial output that is complete, the position of the
member being written and the failures together, so the file never says half of it; a
crash (even SIGKILL) leaves the last committed checkpoint, never a torn one; an exclusive
lock keeps two runs off one state file; and the sqlite3 shell can read it. An append-only
JSON-lines journal would need its own torn-line repair, compaction and locking.

``synchronous=NORMAL`` is enough: the output is fsynced before each commit, and a commit
lost to a power cut only means resuming from the checkpoint before it (re-reading a few
pages), never trusting bytes that are not on disk.

Positions per member follow from the export's order: members before ``head`` are complete
(finished) or in ``failures``; the member at ``head`` is at ``head_position`` with
``head_rows`` rows written from byte ``head_start``; members after it start from scratch.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress

import attrs

from .._models import LedgerPosition
from .errors import ExportStateError, StateProblem

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS export (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL,
    identity TEXT NOT NULL,
    partial_path TEXT NOT NULL,
    complete INTEGER NOT NULL,
    head INTEGER NOT NULL,
    head_id TEXT,
    head_position TEXT NOT NULL,
    head_start INTEGER NOT NULL,
    head_rows INTEGER NOT NULL,
    committed_bytes INTEGER NOT NULL,
    rows INTEGER NOT NULL,
    members_done INTEGER NOT NULL,
    ids_digest TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS failures (
    idx INTEGER PRIMARY KEY,
    member_id TEXT NOT NULL,
    error TEXT NOT NULL
);
"""

_CHECKPOINT_COLUMNS = (
    "head",
    "head_id",
    "head_position",
    "head_start",
    "head_rows",
    "committed_bytes",
    "rows",
    "members_done",
    "ids_digest",
)


def chain_digest(digest: str, member_id: str) -> str:
    """The digest of the ids so far (:attr:`Checkpoint.ids_digest`), after one more id."""
    return hashlib.sha256(f"{digest}\n{member_id}".encode()).hexdigest()


@attrs.frozen
class Checkpoint:
    """Where an export stands: everything before byte ``offset`` of the output is final."""

    #: Members before this place in the ids are written completely or failed.
    head: int = 0
    #: The member at ``head`` when some of its rows are written (None: none are).
    head_id: str | None = None
    head_position: LedgerPosition = LedgerPosition.START
    #: Where the head member's rows begin, and how many are written.
    head_start: int = 0
    head_rows: int = 0
    offset: int = 0
    #: Credits and complete members in the output before ``offset``.
    rows: int = 0
    members_done: int = 0
    #: A digest of the ids before ``head``: a resume must be given the same ids.
    ids_digest: str = ""


@attrs.frozen
class ExportFailure:
    """A member none of whose credits are in the output, and why.

    :ivar index: its place in the ids (0 for the first), counting only the first of
        repeated ids.
    :ivar member_id: its id, as text.
    :ivar error: the error's class and message, e.g. ``NotFoundError: HTTP 404 ...``.
    """

    index: int
    member_id: str
    error: str


class StateFile:
    """An open state file, locked for this process until :meth:`close`.

    :param path: the state file (created if missing).
    :param identity: what makes an export the same one (output, format, columns, API):
        a saved export with another identity is refused.
    :param reveals_key: whether a text holds the API key: a checkpoint whose cursor does
        is refused (``cursor_holds_key``), never written. The file is created mode 0600.
    :raises ExportStateError: if the file is not a state file, is used by another export,
        or belongs to another export.
    """

    def __init__(
        self,
        path: str,
        identity: Mapping[str, str],
        reveals_key: Callable[[str], bool] = lambda text: False,
    ) -> None:
        self.path = path
        self._identity = json.dumps(dict(identity), sort_keys=True)
        self._reveals_key = reveals_key
        try:
            _create_private(path)
            # timeout=0: a file locked by another run is an error at once, not a wait.
            self._db = sqlite3.connect(path, timeout=0, isolation_level=None)
        except (sqlite3.Error, OSError) as exc:
            raise _unusable(
                f"cannot open the state file {path}: {exc}", path, "cannot_open"
            ) from None
        try:
            self._setup()
            self._row = self._db.execute(
                "SELECT version, identity, partial_path, complete, "
                + ", ".join(_CHECKPOINT_COLUMNS)
                + " FROM export"
            ).fetchone()
        except sqlite3.OperationalError as exc:
            self._db.close()
            if "locked" in str(exc):
                raise _unusable(
                    f"another export is using the state file {path}", path, "in_use"
                ) from None
            raise _unusable(
                f"cannot use the state file {path}: {exc}", path, "cannot_open"
            ) from None
        except sqlite3.DatabaseError:
            self._db.close()
            message = (
                f"{path} is not a state file of `inveterate credits export` or `export_credits`"
            )
            raise _unusable(message, path, "not_a_state_file") from None
        if self._row is not None and (
            self._row[0] != SCHEMA_VERSION or self._row[1] != self._identity
        ):
            self._db.close()
            message = (
                f"the state file {path} belongs to another export (another output file, "
                "format or API): use another state file, or delete it to start over"
            )
            raise _unusable(message, path, "other_export")

    def _setup(self) -> None:
        # Exclusive locking, set before WAL is first used: the lock is held from the first
        # write until close, and no shared-memory file is needed.
        self._db.execute("PRAGMA locking_mode=EXCLUSIVE")
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript("BEGIN IMMEDIATE;" + _SCHEMA + "COMMIT;")

    @property
    def saved(self) -> Checkpoint | None:
        """The checkpoint of an export started earlier, or None for a new state file."""
        if self._row is None:
            return None
        values = dict(zip(_CHECKPOINT_COLUMNS, self._row[4:], strict=True))
        return Checkpoint(
            head=values["head"],
            head_id=values["head_id"],
            head_position=LedgerPosition.from_json(values["head_position"]),
            head_start=values["head_start"],
            head_rows=values["head_rows"],
            offset=values["committed_bytes"],
            rows=values["rows"],
            members_done=values["members_done"],
            ids_digest=values["ids_digest"],
        )

    @property
    def complete(self) -> bool:
        """Whether the saved export was read to the end (only its file move may be left)."""
        return self._row is not None and bool(self._row[3])

    def failures(self) -> list[ExportFailure]:
        """The members recorded as failed, in the order of the ids."""
        rows = self._db.execute("SELECT idx, member_id, error FROM failures ORDER BY idx")
        return [ExportFailure(index, member_id, error) for index, member_id, error in rows]

    def start(self, partial_path: str, checkpoint: Checkpoint) -> None:
        """Record a new export (forgetting any earlier one) and its first checkpoint."""
        with self._transaction():
            self._db.execute("DELETE FROM export")
            self._db.execute("DELETE FROM failures")
            self._db.execute(
                "INSERT INTO export (id, version, identity, partial_path, complete, "
                + ", ".join(_CHECKPOINT_COLUMNS)
                + ") VALUES (1, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (SCHEMA_VERSION, self._identity, partial_path, *_values(checkpoint)),
            )
        self._row = (SCHEMA_VERSION, self._identity, partial_path, 0, *_values(checkpoint))

    def save(self, checkpoint: Checkpoint, failures: Sequence[ExportFailure] = ()) -> None:
        """Record ``checkpoint`` and new ``failures`` in one transaction.

        :raises ExportStateError: ``cursor_holds_key`` (nothing written), ``write_failed``.
        """
        self._refuse_key(checkpoint)
        with self._transaction():
            self._db.execute(
                "UPDATE export SET " + ", ".join(f"{name} = ?" for name in _CHECKPOINT_COLUMNS),
                _values(checkpoint),
            )
            self._db.executemany(
                "INSERT OR REPLACE INTO failures (idx, member_id, error) VALUES (?, ?, ?)",
                [(f.index, f.member_id, f.error) for f in failures],
            )

    def _refuse_key(self, checkpoint: Checkpoint) -> None:
        cursor = checkpoint.head_position.cursor
        if cursor is not None and self._reveals_key(cursor):
            raise _unusable(
                f"the API sent a cursor that holds the API key (member {checkpoint.head_id}); "
                f"it is not written to the state file {self.path}: export without a state "
                "file, or ask the API's operators why its cursors hold the key",
                self.path,
                "cursor_holds_key",
            )

    def mark_complete(self) -> None:
        """Record that the export was read to the end: only moving its file is left."""
        with self._transaction():
            self._db.execute("UPDATE export SET complete = 1")

    def close(self) -> None:
        """Close the file (releasing its lock). Idempotent."""
        self._db.close()

    def delete(self) -> None:
        """Close and delete the file (the export is done)."""
        self.close()
        for suffix in ("", "-wal", "-shm", "-journal"):
            with suppress(FileNotFoundError):
                os.remove(self.path + suffix)

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """A write transaction; a failure to write (a full disk) is an
        :class:`ExportStateError` (``write_failed``)."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            message = f"cannot write the state file {self.path}: {exc}"
            raise ExportStateError(message, path=self.path, problem="write_failed") from None


def _create_private(path: str) -> None:
    """Create the state file readable by its owner only (SQLite gives its -wal the same
    mode), unless it exists."""
    with suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def _values(checkpoint: Checkpoint) -> tuple[object, ...]:
    return (
        checkpoint.head,
        checkpoint.head_id,
        checkpoint.head_position.to_json(),
        checkpoint.head_start,
        checkpoint.head_rows,
        checkpoint.offset,
        checkpoint.rows,
        checkpoint.members_done,
        checkpoint.ids_digest,
    )


def _unusable(message: str, path: str, problem: StateProblem) -> ExportStateError:
    return ExportStateError(message, path=path, problem=problem)
