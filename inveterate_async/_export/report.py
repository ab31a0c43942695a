"""What an export did: its report at the end, its progress on the way."""

from __future__ import annotations

import attrs

from .state import Checkpoint, ExportFailure


@attrs.frozen
class ExportCheckpoint:
    """The last checkpoint saved in the state file: where a resume starts.

    :ivar credits: credits saved in the partial output.
    :ivar members: members whose credits are all saved.
    :ivar partial_member: the member whose first credits are saved (the rest follows when
        resumed), or None.
    :ivar partial_credits: how many of that member's credits are saved.
    """

    credits: int
    members: int
    partial_member: str | None = None
    partial_credits: int = 0


@attrs.frozen
class ExportProgress:
    """Where a running export stands (given to ``on_progress``).

    :ivar members: members passed, written or failed, in the order of the ids (a resumed
        export counts those of the runs before).
    :ivar credits: credits written so far.
    :ivar members_written: members whose credits are all written.
    :ivar failed: members that failed so far.
    :ivar saved: the last checkpoint saved, or None without a state file.
    """

    members: int
    credits: int
    members_written: int
    failed: int
    saved: ExportCheckpoint | None


@attrs.frozen
class ExportReport:
    """What :func:`export_credits` did, once every member was read.

    :ivar credits: credits in the output (one row each).
    :ivar members: members whose credits are in the output.
    :ivar failures: the members that failed, none of whose credits are in the output,
        in the order of the ids (with a state file, those of the runs before too).
    :ivar duplicates: ids skipped because they were given before.
    :ivar resumed_from: what an earlier run had saved when this one resumed from its state
        file (None: this run started the export).
    """

    credits: int
    members: int
    failures: tuple[ExportFailure, ...]
    duplicates: int = 0
    resumed_from: ExportCheckpoint | None = None


@attrs.define
class Tally:
    """The running counts of an export, filled in as it goes (also when it stops early)."""

    rows: int = 0
    members_done: int = 0
    #: Members whose ledgers could not be read, in the order of the ids.
    failures: list[ExportFailure] = attrs.field(factory=list)
    #: The last checkpoint saved (with a state file).
    saved: Checkpoint | None = None
    #: The checkpoint this run resumed from, if it did.
    resumed_from: Checkpoint | None = None

    def progress(self, members: int) -> ExportProgress:
        """The counts as an :class:`ExportProgress`, ``members`` passed."""
        return ExportProgress(
            members=members,
            credits=self.rows,
            members_written=self.members_done,
            failed=len(self.failures),
            saved=_public(self.saved),
        )

    def report(self, duplicates: int) -> ExportReport:
        """The counts as the :class:`ExportReport` of a complete export."""
        failures = tuple(self.failures)
        resumed = _public(self.resumed_from)
        return ExportReport(self.rows, self.members_done, failures, duplicates, resumed)


def _public(saved: Checkpoint | None) -> ExportCheckpoint | None:
    if saved is None:
        return None
    return ExportCheckpoint(saved.rows, saved.members_done, saved.head_id, saved.head_rows)
