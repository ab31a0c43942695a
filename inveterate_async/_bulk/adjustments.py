"""Bulk credit adjustments: what to apply, the states of a journal row, and the report."""

from __future__ import annotations

import decimal
import enum
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from decimal import Decimal
from types import MappingProxyType
from typing import Any

import attrs

from .._errors import one_line
from .._http.request import amount_json, encode_customer_id
from .tags import ref_problem, tagged_note

MAX_REF_LENGTH = 200
ATTENTION_LIMIT = 1000
"""The most rows a report lists in ``attention`` (and a dry run in ``to_send``)."""
# Sums are for reports: exact for any amount of fewer than 80 digits.
_SUMS = decimal.Context(prec=80)


class AdjustmentState(str, enum.Enum):
    """Where a journal row stands."""

    PENDING = "pending"
    """Not sent: new, or a send that certainly did not reach the API (a 429, a 401)."""
    APPLIED = "applied"
    """The API answered 2xx, or the member's ledger shows its entry."""
    REJECTED = "rejected"
    """The API answered 400 (nothing was done) or 404 (no such member); not re-sent."""
    UNKNOWN = "unknown"
    """Being sent, or it may have been applied (5xx, timeout, lost connection, a crash):
    the ledger decides."""
    NOT_APPLIED = "not_applied"
    """Not in the ledger in two reads, the last after the settle window; re-sent only
    if allowed."""
    NEEDS_REVIEW = "needs_review"
    """The ledger contradicts the journal (two entries with its tag, another amount, or
    more look-alikes than rows): a person decides; never sent again."""

    def __str__(self) -> str:
        return self.value


def _check_ref(_: object, __: object, ref: Any) -> None:
    if not isinstance(ref, str):
        raise ValueError(f"ref must be a str, not {type(ref).__name__}")
    if not ref or ref != ref.strip() or len(ref) > MAX_REF_LENGTH:
        raise ValueError(
            f"ref must be 1 to {MAX_REF_LENGTH} characters without surrounding spaces: {ref!r}"
        )
    if one_line(ref) != ref:
        raise ValueError(f"ref must not contain control characters or line breaks: {ref!r}")
    problem = ref_problem(ref)
    if problem is not None:
        raise ValueError(f"{problem}: {ref!r}")


def _member_text(customer_id: str | int) -> str:
    encode_customer_id(customer_id)
    return str(customer_id)


def _exact_amount(amount: int | Decimal | str) -> Decimal:
    return Decimal(amount_json(amount))


def _check_note(_: object, __: object, note: Any) -> None:
    if note is not None and not isinstance(note, str):
        raise ValueError(f"note must be a str or None, not {type(note).__name__}")


def _check_force(_: object, __: object, force: Any) -> None:
    if force is not None and not isinstance(force, bool):
        raise ValueError(f"force must be a bool or None, not {type(force).__name__}")


@attrs.frozen(slots=True)
class CreditAdjustment:
    """One credit to add (positive ``amount``) or remove (negative) in a bulk run.

    Every field is checked here, so a bad row raises ``ValueError`` before anything is
    sent.

    :param ref: your unique key for this adjustment, e.g. ``"gold-bonus-2026-11:6453738"``
        (1-200 characters; no whitespace, ``[``, ``]`` or control characters, so that the
        tag ``[ref:REF]`` in the note is unambiguous). A journal holds one row per ref.
    :param customer_id: the member (an ``int`` is kept as its text: ``42`` is ``"42"``).
    :param amount: exact, as for ``create_credit``: a ``Decimal``, decimal ``str`` or
        ``int``; a float or zero is refused.
    :param note: the note stored with the credit.
    :param force: with a negative amount, disable active credit redemption codes.
    """

    ref: str = attrs.field(validator=_check_ref)
    customer_id: str = attrs.field(converter=_member_text)
    amount: Decimal = attrs.field(converter=_exact_amount)
    note: str | None = attrs.field(default=None, validator=_check_note)
    force: bool | None = attrs.field(default=None, validator=_check_force)

    def same_content(self, other: CreditAdjustment) -> bool:
        """Whether both send the same credit: equal member, amount value, note and force.

        ``5.00`` and ``5.0`` are the same amount; no ``force`` is ``force=False``.
        """
        return (
            self.customer_id == other.customer_id
            and self.amount == other.amount
            and (self.note or None) == (other.note or None)
            and bool(self.force) == bool(other.force)
        )

    def tagged_note(self) -> str:
        """The note as ``tag_notes=True`` sends it: ``"{note} [ref:{ref}]"``, or
        ``"[ref:{ref}]"`` without a note."""
        return tagged_note(self.note, self.ref)


@attrs.frozen(slots=True)
class CandidateEntry:
    """A ledger entry that could be the effect of a row under review."""

    entry_id: str
    amount: Decimal
    note: str | None
    created_at: datetime | None


@attrs.frozen(slots=True)
class AdjustmentRow:
    """A journal row: an adjustment, where it stands, and the evidence.

    ``sent_note`` is the note as sent (with the ref marker under ``tag_notes``);
    ``attempts`` counts the POSTs started, ``resends`` those started after the row was
    found not applied; times are timezone-aware UTC. ``entry_id`` is
    the ledger entry claimed for it (None when applied by a 2xx that did not name one);
    ``error`` is the last error's text; ``candidates`` are the look-alike entries of a
    row that needs review.
    """

    adjustment: CreditAdjustment
    state: AdjustmentState
    attempts: int = 0
    resends: int = 0
    sent_note: str | None = None
    first_sent_at: datetime | None = None
    last_sent_at: datetime | None = None
    entry_id: str | None = None
    error: str | None = None
    candidates: tuple[CandidateEntry, ...] = ()

    @property
    def ref(self) -> str:
        """The adjustment's ref."""
        return self.adjustment.ref


@attrs.frozen(slots=True)
class AdjustmentReport:
    """The outcome of ``apply_credits`` (or a journal's state), over every journal row.

    ``counts`` and ``sums`` (of amounts) have every state as a key. ``attention`` holds
    the rows that are not applied, in journal order: the first :data:`ATTENTION_LIMIT`
    of them (``total - counts[APPLIED]`` is how many there are; ``Journal.rows`` reads
    them all). A dry run's ``to_send`` holds the first rows it would send and
    ``to_send_total`` their number; nothing was written then.
    """

    counts: Mapping[AdjustmentState, int]
    sums: Mapping[AdjustmentState, Decimal]
    attention: tuple[AdjustmentRow, ...]
    dry_run: bool = False
    to_send: tuple[AdjustmentRow, ...] = ()
    to_send_total: int = 0

    @property
    def total(self) -> int:
        """The number of rows in the journal."""
        return sum(self.counts.values())

    @property
    def all_applied(self) -> bool:
        """Whether every row is applied."""
        return self.counts[AdjustmentState.APPLIED] == self.total

    @classmethod
    def of(cls, rows: Iterable[AdjustmentRow]) -> AdjustmentReport:
        """The report of ``rows`` (a whole journal, in journal order)."""
        tally = Tally()
        for row in rows:
            tally.add(row)
        return tally.report()


class Tally:
    """Builds a report in one pass over rows, keeping only the rows it will list."""

    def __init__(self) -> None:
        self._counts = dict.fromkeys(AdjustmentState, 0)
        self._sums = dict.fromkeys(AdjustmentState, Decimal(0))
        self._attention: list[AdjustmentRow] = []
        self._to_send: list[AdjustmentRow] = []
        self._to_send_total = 0

    def count(self, state: AdjustmentState, amount: Decimal, times: int = 1) -> None:
        """Count one row of ``state`` (``times=-1``: take one back)."""
        self._counts[state] += times
        self._sums[state] = _SUMS.add(self._sums[state], amount * times)

    def add(self, row: AdjustmentRow) -> None:
        """Count a row, and list it if it needs attention."""
        self.count(row.state, row.adjustment.amount)
        if row.state is not AdjustmentState.APPLIED:
            self.list_attention(row)

    def list_attention(self, row: AdjustmentRow) -> None:
        """List a row that needs attention (up to :data:`ATTENTION_LIMIT`), uncounted."""
        if len(self._attention) < ATTENTION_LIMIT:
            self._attention.append(row)

    def would_send(self, row: AdjustmentRow) -> None:
        """Note a row a dry run would send."""
        self._to_send_total += 1
        if len(self._to_send) < ATTENTION_LIMIT:
            self._to_send.append(row)

    def report(self, *, dry_run: bool = False) -> AdjustmentReport:
        """The report of what was added."""
        return AdjustmentReport(
            MappingProxyType(dict(self._counts)),
            MappingProxyType(dict(self._sums)),
            tuple(self._attention),
            dry_run=dry_run,
            to_send=tuple(self._to_send),
            to_send_total=self._to_send_total,
        )


def within_places(
    adjustments: Iterable[CreditAdjustment], places: int
) -> Iterator[CreditAdjustment]:
    """The adjustments, with ValueError for an amount of more than ``places`` decimals."""
    for adjustment in adjustments:
        if isinstance(adjustment, CreditAdjustment):
            exponent = adjustment.amount.as_tuple().exponent
            if isinstance(exponent, int) and -exponent > places:
                raise ValueError(
                    f"ref {adjustment.ref!r}: amount {adjustment.amount} has more than "
                    f"{places} decimal places"
                )
        yield adjustment
