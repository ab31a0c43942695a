"""Journal rows in SQLite: adjustments to columns and back, and the conflict message."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from .._errors import JournalConflictError
from .adjustments import AdjustmentRow, AdjustmentState, CandidateEntry, CreditAdjustment

LISTED_CONFLICTS = 5


def content(adjustment: CreditAdjustment) -> tuple[Any, ...]:
    """The columns ``ref, customer_id, amount, note, force`` of an adjustment."""
    force = None if adjustment.force is None else int(adjustment.force)
    return (
        adjustment.ref,
        adjustment.customer_id,
        str(adjustment.amount),
        adjustment.note,
        force,
    )


LEGACY_SENDING = "sending"


def stored_state(text: str) -> AdjustmentState:
    """The state a row's stored text means (version-1 journals stored unknown as
    ``sending``)."""
    return AdjustmentState.UNKNOWN if text == LEGACY_SENDING else AdjustmentState(text)


def to_row(record: sqlite3.Row) -> AdjustmentRow:
    """The :class:`AdjustmentRow` of a database row."""
    force = record["force"]
    adjustment = CreditAdjustment(
        ref=record["ref"],
        customer_id=record["customer_id"],
        amount=Decimal(record["amount"]),
        note=record["note"],
        force=None if force is None else bool(force),
    )
    state = record["state"]
    return AdjustmentRow(
        adjustment,
        # Journals of version 1 marked rows "sending" before their POST: unknown now.
        stored_state(state),
        attempts=record["attempts"],
        resends=record["resends"],
        sent_note=record["sent_note"],
        first_sent_at=_time(record["first_sent_at"]),
        last_sent_at=_time(record["last_sent_at"]),
        entry_id=record["entry_id"],
        error=record["error"],
        candidates=_candidates(record["candidates"]),
    )


def _time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def candidates_json(candidates: Iterable[CandidateEntry]) -> str | None:
    """The candidates of a row under review, as stored (None for none)."""
    items = [
        {
            "id": c.entry_id,
            "amount": str(c.amount),
            "note": c.note,
            "createdAt": None if c.created_at is None else c.created_at.isoformat(),
        }
        for c in candidates
    ]
    return json.dumps(items, ensure_ascii=False) if items else None


def _candidates(text: str | None) -> tuple[CandidateEntry, ...]:
    if text is None:
        return ()
    return tuple(
        CandidateEntry(item["id"], Decimal(item["amount"]), item["note"], _time(item["createdAt"]))
        for item in json.loads(text)
    )


def conflict_error(
    path: str, listed: Sequence[tuple[CreditAdjustment, AdjustmentRow]], refs: Sequence[str]
) -> JournalConflictError:
    """The error for refs whose new content conflicts with the journal's.

    :param listed: the first conflicts, with the rows they conflict with.
    :param refs: every conflicting ref, in input order.
    """
    lines = [
        f"{new.ref} ({row.state}: {_differences(row.adjustment, new)})"
        for new, row in listed[:LISTED_CONFLICTS]
    ]
    more = len(refs) - len(lines)
    shown = "; ".join(lines) + (f"; and {more} more" if more > 0 else "")
    return JournalConflictError(
        f"{len(refs)} ref(s) already in {path} with different content may have been "
        f"applied, so they cannot be edited (use new refs): {shown}",
        path=path,
        refs=tuple(refs),
    )


def _differences(old: CreditAdjustment, new: CreditAdjustment) -> str:
    fields = [
        ("customer_id", old.customer_id, new.customer_id, old.customer_id == new.customer_id),
        ("amount", str(old.amount), str(new.amount), old.amount == new.amount),
        ("note", old.note, new.note, (old.note or None) == (new.note or None)),
        ("force", old.force, new.force, bool(old.force) == bool(new.force)),
    ]
    return ", ".join(f"{name} {a!r} -> {b!r}" for name, a, b, same in fields if not same)
