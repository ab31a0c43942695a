"""Adding a batch to a journal, a chunk at a time inside one transaction.

New refs are added as pending; a ref the journal has is listed in this run's batch, and
edited if nothing can have been applied for it (never sent, or rejected); a ref given
twice, or with other content after it may have been applied, undoes the whole merge.
Memory holds one chunk, whatever the batch's size.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from .adjustments import AdjustmentRow, AdjustmentState, CreditAdjustment
from .journal_file import JournalFile, wall_time
from .rows import LISTED_CONFLICTS, conflict_error, content, to_row

CHUNK = 500
EDITABLE = frozenset({AdjustmentState.PENDING, AdjustmentState.REJECTED})


class Merge:
    """One merge in progress on a writer's file: :meth:`add` chunks, then :meth:`finish`."""

    def __init__(self, file: JournalFile) -> None:
        self._file = file
        self._conflicts: list[str] = []
        self._listed: list[tuple[CreditAdjustment, AdjustmentRow]] = []

    def start(self) -> None:
        """Begin the transaction."""
        self._file.begin()

    def add(self, chunk: Sequence[CreditAdjustment]) -> None:
        """Merge a chunk of the batch.

        :raises ValueError: a ref is given twice in the batch.
        """
        db, run, stamp = self._file.db, self._file.run, wall_time()
        marks = ",".join("?" * len(chunk))
        query = f"SELECT * FROM adjustments WHERE ref IN ({marks})"
        existing: dict[str, sqlite3.Row | None] = {
            r["ref"]: r for r in db.execute(query, [a.ref for a in chunk])
        }
        inserts, listed, edits = [], [], []
        for adjustment in chunk:
            ref = adjustment.ref
            record = existing.get(ref, ...)
            if record is None or (record is not ... and record["run"] == run):
                raise ValueError(f"ref {ref!r} is given twice")
            existing[ref] = None  # seen in this chunk: given again is a duplicate
            if record is ...:
                inserts.append((*content(adjustment), stamp, stamp, run))
                continue
            row = to_row(record)
            if row.adjustment.same_content(adjustment):
                listed.append((run, ref))
            elif row.state in EDITABLE:
                edits.append((*content(adjustment)[1:], stamp, run, ref))
            else:
                self._conflicts.append(ref)
                if len(self._listed) < LISTED_CONFLICTS:
                    self._listed.append((adjustment, row))
        db.executemany(_INSERT_SQL, inserts)
        db.executemany("UPDATE adjustments SET run = ? WHERE ref = ?", listed)
        db.executemany(_EDIT_SQL, edits)

    def finish(self) -> None:
        """Commit, or undo everything if a ref conflicted.

        :raises JournalConflictError: refs are there with other content; nothing changed.
        """
        if self._conflicts:
            self._file.rollback()
            raise conflict_error(self._file.path, self._listed, self._conflicts)
        self._file.commit()

    def abandon(self) -> None:
        """Undo everything (the batch failed, or the caller was cancelled)."""
        self._file.rollback()


_INSERT_SQL = (
    "INSERT INTO adjustments (ref, customer_id, amount, note, force, state, added_at, "
    "updated_at, run) VALUES (?, ?, ?, ?, ?, 'pending', ?, ?, ?)"
)
# An edited row starts again: nothing was applied for it (never sent, or rejected).
_EDIT_SQL = (
    "UPDATE adjustments SET customer_id = ?, amount = ?, note = ?, force = ?, "
    "state = 'pending', sent_note = NULL, candidates = NULL, error = NULL, updated_at = ?, "
    "run = ? WHERE ref = ?"
)
