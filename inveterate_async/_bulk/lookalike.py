"""Untagged reconciliation: which ledger entries are the effect of which sent rows.
Pure, no I/O. Without ``tag_notes`` a note does not name its row, so entries are matched
by what they hold; the tagged path matches by tag instead (:mod:`.ledger`).

A row whose outcome is unknown is matched against the member's ledger. Its candidates are
the entries with the same amount (by value) and the same note as sent, created no earlier
than its first send minus a clock-skew allowance, and not claimed by another journal row.

Rows of one member with the same amount and note cannot be told apart by their entries, so
they are decided together, as a group:

- more candidates than rows in the group: every undecided row needs review (something
  else made look-alike entries, or a row was applied twice); nothing is guessed;
- otherwise candidates are paired with rows, oldest entry first, rows answered 2xx (applied,
  entry not known) before the others; an undecided row that gets one is applied;
- an undecided row without one is not applied once the whole group's settle window is
  over (as the caller decides), and waits until then;
- a group with a row already under review stays under review;
- a row applied after a re-send is checked too: an entry it cannot explain may be its
  first write, applied after the settle window, so more candidates than rows puts it
  under review (applied twice).
"""

from __future__ import annotations

import enum
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Sequence
from datetime import datetime, timedelta
from decimal import Decimal

import attrs

from .._models import Credit


@attrs.frozen(slots=True)
class Entry:
    """A ledger entry as reconciliation sees it; ``key`` identifies it in the ledger (its
    ``id``, or a fingerprint when it has none: ``has_id`` False)."""

    key: str
    amount: Decimal
    note: str
    created_at: datetime | None
    has_id: bool = True


class Standing(enum.Enum):
    """What is known of a row being reconciled."""

    UNDECIDED = "undecided"
    """Unknown or not applied: the ledger decides."""
    CONFIRMED = "confirmed"
    """Answered 2xx: applied, but which entry is its own is not known."""
    UNDER_REVIEW = "under_review"
    """Already needs review: left to a person."""
    RESENT = "resent"
    """Applied after a re-send: a late first write would be an extra look-alike."""


@attrs.frozen(slots=True)
class Sent:
    """A journal row whose effect the ledger must show."""

    ref: str
    amount: Decimal
    note: str
    first_sent_at: datetime
    last_sent_at: datetime
    standing: Standing = Standing.UNDECIDED
    own_entry: str | None = None  # the key of the entry claimed for it, if any


class Verdict(enum.Enum):
    """What reconciliation decided for an undecided row."""

    MATCHED = "matched"
    AMBIGUOUS = "ambiguous"
    WAIT = "wait"
    UNCONFIRMED = "unconfirmed"


@attrs.frozen(slots=True)
class Finding:
    """The verdict on one row: its entry when matched, the candidates when ambiguous."""

    ref: str
    verdict: Verdict
    entry: Entry | None = None
    candidates: tuple[Entry, ...] = ()


def has_entry_id(credit: Credit) -> bool:
    """Whether the ledger entry carries an ``id``."""
    entry_id = credit.raw.get("id")
    return isinstance(entry_id, (str, int)) and not isinstance(entry_id, bool)


def entry_key(credit: Credit) -> str:
    """The ledger entry's ``id``; without one, a fingerprint of what it holds."""
    if has_entry_id(credit):
        return str(credit.raw["id"])
    created = "" if credit.created_at is None else credit.created_at.isoformat()
    return f"{created}|{credit.amount}|{credit.new_balance}|{credit.note or ''}"


def entry_of(credit: Credit) -> Entry:
    """The :class:`Entry` of a credit read from the ledger."""
    key = entry_key(credit)
    return Entry(key, credit.amount, credit.note or "", credit.created_at, has_entry_id(credit))


def reconcile(
    rows: Iterable[Sent],
    entries: Iterable[Entry],
    claimed: Collection[str],
    *,
    settled: Callable[[Sent], bool],
    skew: timedelta,
) -> list[Finding]:
    """Decide every undecided row of one member from a read of its ledger.

    :param rows: the member's rows that are unknown, not applied, under review, applied
        by a 2xx without a known entry, or applied after a re-send.
    :param entries: the whole ledger as read, started at ``now``.
    :param claimed: keys of entries claimed by journal rows, except those of ``rows``
        applied after a re-send (their ``own_entry``).
    :param settled: whether a row's settle window is over, as of this read.
    :param skew: how much earlier than the send an entry's ``createdAt`` may be.
    :returns: one finding per undecided row, and one per re-sent row that needs review,
        in ``rows`` order.
    """
    rows = list(rows)
    groups: defaultdict[tuple[Decimal, str], list[Sent]] = defaultdict(list)
    for row in rows:
        groups[row.amount, row.note].append(row)
    free = [entry for entry in entries if entry.key not in claimed]
    findings: dict[str, Finding] = {}
    for (amount, note), group in groups.items():
        looks_alike = [e for e in free if e.amount == amount and e.note == note]
        findings.update(_decide(group, looks_alike, settled=settled, skew=skew))
    return [findings[row.ref] for row in rows if row.ref in findings]


def _decide(
    group: Sequence[Sent],
    looks_alike: Sequence[Entry],
    *,
    settled: Callable[[Sent], bool],
    skew: timedelta,
) -> dict[str, Finding]:
    undecided = [row for row in group if row.standing is Standing.UNDECIDED]
    resent = [row for row in group if row.standing is Standing.RESENT]
    if not undecided and not resent:
        return {}
    earliest = min(row.first_sent_at for row in group) - skew
    latest = None if undecided else _newest_own(group, looks_alike, skew)
    candidates = tuple(
        sorted(
            (e for e in looks_alike if _within(e, earliest, latest)),
            key=_age,
        )
    )
    if len(candidates) > len(group):
        return {
            row.ref: Finding(row.ref, Verdict.AMBIGUOUS, candidates=candidates)
            for row in [*undecided, *resent]
        }
    if any(row.standing is Standing.UNDER_REVIEW for row in group):
        return {
            row.ref: Finding(row.ref, Verdict.AMBIGUOUS, candidates=candidates) for row in undecided
        }
    matched = _pair(group, candidates, skew)
    over = all(settled(row) for row in group)
    findings = {}
    for row in undecided:
        entry = matched.get(row.ref)
        if entry is not None:
            findings[row.ref] = Finding(row.ref, Verdict.MATCHED, entry)
        else:
            findings[row.ref] = Finding(row.ref, Verdict.UNCONFIRMED if over else Verdict.WAIT)
    return findings


def _newest_own(
    group: Sequence[Sent], looks_alike: Sequence[Entry], skew: timedelta
) -> datetime | None:
    """For a group with only applied rows to check: a second entry of theirs can only be
    a late first send, stamped (by the API, as their own entries are) no later than their
    own entries; None when an own entry or its time is unknown (no bound)."""
    stamps = {entry.key: entry.created_at for entry in looks_alike}
    own = [stamps.get(row.own_entry) if row.own_entry else None for row in group]
    if any(stamp is None for stamp in own):
        return None
    return max(stamp for stamp in own if stamp is not None) + skew


def _within(entry: Entry, earliest: datetime, latest: datetime | None) -> bool:
    if entry.created_at is None:
        return True
    return entry.created_at >= earliest and (latest is None or entry.created_at <= latest)


def _pair(group: Sequence[Sent], candidates: Sequence[Entry], skew: timedelta) -> dict[str, Entry]:
    # A row keeps the entry already claimed for it. Then candidates go oldest first: a row
    # that may take an entry may take every later one too, so any row that fits is as good
    # as another for the count; rows known to be applied go first because they certainly
    # have an entry somewhere.
    matched: dict[str, Entry] = {}
    by_key = {entry.key: entry for entry in candidates}
    for row in group:
        if row.own_entry is not None and row.own_entry in by_key:
            matched[row.ref] = by_key.pop(row.own_entry)
    waiting = sorted(
        (row for row in group if row.ref not in matched),
        key=lambda row: row.standing not in (Standing.CONFIRMED, Standing.RESENT),
    )
    for entry in by_key.values():
        for row in waiting:
            if entry.created_at is None or entry.created_at >= row.first_sent_at - skew:
                matched[row.ref] = entry
                waiting.remove(row)
                break
    return matched


def _age(entry: Entry) -> tuple[bool, datetime | None]:
    # Entries without a timestamp sort last: they fit every row.
    return (entry.created_at is None, entry.created_at)
