"""Where each member handed to the fan-out stands in an ordered export."""

from __future__ import annotations

import enum

import attrs

from .._models import LedgerPosition


class Status(enum.Enum):
    """How far a member's ledger has been read."""

    READING = enum.auto()
    DONE = enum.auto()
    HELD = enum.auto()  # failed for a shared cause: final only if the fan-out goes on
    FAILED = enum.auto()


@attrs.define
class Member:
    """A member between being handed to the fan-out and being written (or failed)."""

    index: int
    member_id: str
    #: After the last page in the output: where a resume starts this member.
    position: LedgerPosition = LedgerPosition.START
    status: Status = Status.READING
    written: int = 0  # rows in the output
    #: The pages waiting in the spool: their rows and the position after each.
    spooled: list[tuple[int, LedgerPosition]] = attrs.field(factory=list)
    start: int = 0  # where its rows begin in the output, once it is the head
    error: str = ""
