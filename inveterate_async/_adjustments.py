"""Bulk credit adjustments: what to apply, the states of a journal row, and the report."""

from __future__ import annotations

import decimal
import enum
from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from types import MappingProxyType
from typing import Any

import attrs

from ._errors import one_line
from ._request import amount_json, encode_customer_id

MAX_REF_LENGTH = 200
# Sums are for reports: exact for any amount of fewer than 80 digits.
_SUMS = decimal.Context(prec=80)


class AdjustmentState(str, enum.Enum):
    """Where a journal row stands."""

    PENDING = "pending"
    """Not sent: new, or a send that certainly never reached the API (e.g. a 429)."""
    SENDING = "sending"
    """Marked before the POST left; found so after a crash, it counts as unknown."""
    APPLIED = "applied"
    """The API answered 2xx, or reconciliation found its ledger entry."""
    REJECTED = "rejected"
    """The API answered 4xx (400: nothing was done); never re-sent unless edited."""
    UNKNOWN = "unknown"
    """It may have been applied (5xx, timeout, lost connection); to be reconciled."""
    NOT_APPLIED = "not_applied"
    """Reconciled: no ledger entry after the settle window; re-sent only if allowed."""
    NEEDS_REVIEW = "needs_review"
    """Reconciled: more look-alike entries than rows to explain them; a person decides."""

    def __str__(self) -> str:
        return self.value


SETTLED_STATES = frozenset({AdjustmentState.APPLIED, AdjustmentState.REJECTED})
"""States a re-run skips."""


def _check_ref(_: object, __: object, ref: Any) -> None:
    if not isinstance(ref, str):
        raise ValueError(f"ref must be a str, not {type(ref).__name__}")
    if not ref or ref != ref.strip() or len(ref) > MAX_REF_LENGTH:
        raise ValueError(
            f"ref must be 1 to {MAX_REF_LENGTH} characters without surrounding spaces: {ref!r}"
        )
    if one_line(ref) != ref:
        raise ValueError(f"ref must not contain control characters or line breaks: {ref!r}")


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
        (1-200 characters, no control characters). A journal holds one row per ref.
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
        marker = f"[ref:{self.ref}]"
        return f"{self.note} {marker}" if self.note else marker


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
    """The outcome of ``apply_credits`` (or a journal's state): every row of the journal.

    ``counts`` and ``sums`` (of amounts) have every state as a key; ``attention`` holds
    the rows that are not applied, in journal order. A dry run's ``to_send`` holds the
    rows it would send; nothing was written then.
    """

    counts: Mapping[AdjustmentState, int]
    sums: Mapping[AdjustmentState, Decimal]
    attention: tuple[AdjustmentRow, ...]
    dry_run: bool = False
    to_send: tuple[AdjustmentRow, ...] = ()

    @property
    def total(self) -> int:
        """The number of rows in the journal."""
        return sum(self.counts.values())

    @property
    def all_applied(self) -> bool:
        """Whether every row is applied."""
        return self.counts[AdjustmentState.APPLIED] == self.total

    @classmethod
    def of(
        cls,
        rows: Iterable[AdjustmentRow],
        *,
        dry_run: bool = False,
        to_send: Iterable[AdjustmentRow] = (),
    ) -> AdjustmentReport:
        """The report of ``rows`` (a whole journal, in journal order)."""
        counts = dict.fromkeys(AdjustmentState, 0)
        sums = dict.fromkeys(AdjustmentState, Decimal(0))
        attention = []
        for row in rows:
            counts[row.state] += 1
            sums[row.state] = _SUMS.add(sums[row.state], row.adjustment.amount)
            if row.state is not AdjustmentState.APPLIED:
                attention.append(row)
        return cls(
            MappingProxyType(counts),
            MappingProxyType(sums),
            tuple(attention),
            dry_run=dry_run,
            to_send=tuple(to_send),
        )
