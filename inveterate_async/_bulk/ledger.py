"""A member's ledger as a bulk run reads it, and what it says of a tagged row. Pure,
except :func:`read_ledger`.

With ``tag_notes`` an adjustment's entry is the one whose note carries its tag: exactly
one such entry with the same amount is its entry; none means not (yet) applied; two, or
one with another amount, contradict the journal and need a person.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

import attrs

from .._errors import (
    APIConnectionError,
    APIStatusError,
    AuthenticationError,
    InveterateError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
)
from .adjustments import AdjustmentRow, CandidateEntry
from .api import CreditsAPI
from .lookalike import Entry, Finding, Verdict, entry_of
from .tags import ref_of


@attrs.frozen(slots=True)
class Ledger:
    """One read of a member's ledger: the tagged entries by ref, and (for untagged
    matching) every entry."""

    tagged: Mapping[str, tuple[Entry, ...]]
    entries: tuple[Entry, ...] = ()


async def read_ledger(api: CreditsAPI, member: str, *, keep_all: bool) -> Ledger:
    """Read a member's whole ledger.

    :param keep_all: keep every entry, not only the tagged ones.
    :raises InveterateError: the read failed.
    """
    tagged: defaultdict[str, list[Entry]] = defaultdict(list)
    entries: list[Entry] = []
    async for credit in api.iter_credits(member):
        ref = ref_of(credit.note)
        if ref is None and not keep_all:
            continue
        entry = entry_of(credit)
        if ref is not None:
            tagged[ref].append(entry)
        if keep_all:
            entries.append(entry)
    return Ledger({ref: tuple(found) for ref, found in tagged.items()}, tuple(entries))


def find(ledger: Ledger, row: AdjustmentRow) -> Finding:
    """What the ledger says of a tagged row: MATCHED (its entry), AMBIGUOUS (the
    contradicting entries) or UNCONFIRMED (no entry with its tag)."""
    found = ledger.tagged.get(row.ref, ())
    if not found:
        return Finding(row.ref, Verdict.UNCONFIRMED)
    if len(found) == 1 and found[0].amount == row.adjustment.amount:
        return Finding(row.ref, Verdict.MATCHED, found[0])
    return Finding(row.ref, Verdict.AMBIGUOUS, candidates=found)


def contradiction(finding: Finding, row: AdjustmentRow) -> str:
    """Why a tagged row's entries need a person."""
    if len(finding.candidates) > 1:
        twice = " (applied twice)" if row.resends else ""
        return f"{len(finding.candidates)} ledger entries carry its tag{twice}"
    amount = finding.candidates[0].amount
    return f"its tagged entry has amount {amount}, not {row.adjustment.amount}"


def is_auth_failure(error: InveterateError) -> bool:
    """Whether the API refused the key: the run stops, nothing more is sent."""
    return isinstance(error, (AuthenticationError, PermissionDeniedError)) or (
        isinstance(error, APIStatusError) and error.is_auth_error
    )


def is_missing_member(error: InveterateError) -> bool:
    """Whether the member does not exist (a 404)."""
    return isinstance(error, NotFoundError)


def is_transient(error: InveterateError) -> bool:
    """Whether a failed read may succeed if tried again later."""
    if isinstance(error, APIStatusError):
        return isinstance(error, RateLimitError) or error.status >= 500 or error.status == 408
    return isinstance(error, APIConnectionError)


def describe(error: BaseException) -> str:
    """An error as a journal row's ``error`` text."""
    return f"{type(error).__name__}: {error}"


def as_candidate(entry: Entry) -> CandidateEntry:
    """A ledger entry as a row under review lists it."""
    return CandidateEntry(entry.key, entry.amount, entry.note or None, entry.created_at)
