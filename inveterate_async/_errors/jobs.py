"""The errors of the jobs built on the client: streaming many ledgers, and the bulk
journal."""

from __future__ import annotations

from .api import InveterateError


class MemberError(InveterateError):
    """Raised by ``iter_credits_many(on_error="raise")`` for the first member that failed.

    ``error`` (also ``__cause__``) is the typed cause; ``cursor`` is where to resume
    that member (None: from the start).
    """

    _repr_fields: tuple[str, ...] = ("customer_id", "error", "cursor")
    _cause_field = "error"

    def __init__(self, customer_id: str | int, error: Exception, cursor: str | None) -> None:
        super().__init__(f"member {customer_id!r}: {type(error).__name__}: {error}")
        self.customer_id = customer_id
        self.error = error
        self.cursor = cursor


class StreamAbortedError(InveterateError):
    """``iter_credits_many`` stopped: members kept failing for a cause no member can avoid.

    ``reason`` says which (the key was refused, the API cannot be reached); ``error``
    (also ``__cause__``) is the last member's typed error; ``failed`` counts the members
    that failed in a row.
    """

    _repr_fields: tuple[str, ...] = ("reason", "failed", "error")
    _cause_field = "error"

    def __init__(self, reason: str, failed: int, error: Exception) -> None:
        super().__init__(
            f"stopped after {failed} members in a row failed because {reason}: "
            f"{type(error).__name__}: {error}"
        )
        self.reason = reason
        self.failed = failed
        self.error = error


class JournalError(InveterateError):
    """A bulk-adjustment journal cannot be used: not a journal, unreadable, or missing.

    ``path`` is the journal's file.
    """

    _repr_fields: tuple[str, ...] = ("message", "path")

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message)
        self.path = path


class JournalLockedError(JournalError):
    """Another writer has the journal: another process, or another ``Journal`` (or
    ``apply_credits`` call) in this one.

    ``holder`` says who, as far as known: the pid, host and start time the holder recorded
    in the journal. Raised when opening, before anything is sent; or mid-run if another
    writer took the journal over (the run stops; rows it was sending are unknown, and the
    next run looks them up in the ledger first).
    """

    _repr_fields: tuple[str, ...] = ("message", "path", "holder")

    def __init__(self, message: str, *, path: str, holder: str) -> None:
        super().__init__(message, path=path)
        self.holder = holder


class JournalWriteError(JournalError):
    """Writing the journal failed (a full disk, an I/O error) after POSTs went out.

    Rows being sent may have been applied; the journal holds them as unknown. Fix the
    cause the message names and run again: they are looked up in the ledger first.
    """


class JournalConflictError(JournalError):
    """Some refs are already in the journal with different content; nothing was sent.

    ``refs`` are the conflicting refs, in input order. A row can be edited only while
    the API has certainly applied nothing for it: never sent, or rejected.
    """

    _repr_fields: tuple[str, ...] = ("message", "path", "refs")

    def __init__(self, message: str, *, path: str, refs: tuple[str, ...]) -> None:
        super().__init__(message, path=path)
        self.refs = refs
