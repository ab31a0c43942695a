"""Sending one row: marked unknown durably before its POST leaves, then what the answer
proves.

- any 2xx: applied (its entry is looked up later if the answer did not name it);
- 400: rejected (nothing was done), unless it refused the key;
- 404: rejected (no such member), with the API's message;
- the key refused (401, 403, or a 400 about the key): pending, and the run stops;
- 429 after the client's retries, or a connection that never reached the API: pending;
- anything else (3xx, 408, 409, other 4xx, 5xx, a timeout, a dropped connection, an
  unreadable error answer): unknown, for the ledger to decide.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal, InvalidOperation

import attrs

from .._errors import (
    APIConnectionError,
    APIStatusError,
    InvalidResponseError,
    InveterateError,
    RateLimitError,
)
from .._models import CreditResult
from .adjustments import AdjustmentRow, AdjustmentState, CreditAdjustment
from .context import RunContext, taken
from .ledger import describe, is_auth_failure, is_missing_member
from .stored import Stored


def outcome(error: InveterateError) -> AdjustmentState:
    """The state a row is in after its POST failed with ``error``."""
    if is_auth_failure(error) or isinstance(error, RateLimitError):
        return AdjustmentState.PENDING
    if isinstance(error, InvalidResponseError) and 200 <= (error.status or 0) < 300:
        return AdjustmentState.APPLIED  # the status proves it; the body did not say more
    if isinstance(error, APIStatusError):
        if error.status == 400 or is_missing_member(error):
            return AdjustmentState.REJECTED
        return AdjustmentState.UNKNOWN
    if isinstance(error, APIConnectionError) and not error.outcome_unknown:
        return AdjustmentState.PENDING  # it never reached the API
    return AdjustmentState.UNKNOWN


def note_to_send(ctx: RunContext, row: AdjustmentRow) -> str | None:
    """The note a row is sent with: as first sent, for a re-send."""
    if row.state is AdjustmentState.NOT_APPLIED:
        return row.sent_note
    adjustment = row.adjustment
    return adjustment.tagged_note() if ctx.options.tag_notes else adjustment.note


async def send(ctx: RunContext, stored: Stored) -> None:
    """Send one pending (or not applied) row and record what the answer proves.

    :raises JournalLockedError: another writer changed the row.
    """
    row = stored.row
    adjustment = row.adjustment
    note = note_to_send(ctx, row)
    journal = ctx.journal
    ctx.check()
    try:
        marked = await journal._mark_sent(row.ref, row.state, note, ctx.options.clock())
    except asyncio.CancelledError:
        # Nothing has left yet: put the row back as it was (the mark may have been
        # written).
        await journal._unmark(stored)
        raise
    if not marked:
        raise taken(journal, row)
    if ctx.failed:  # a record committed with this mark failed: this row is not sent
        await journal._unmark(stored)
        ctx.check()
    ctx.may_have_sent = True
    resend = row.state is AdjustmentState.NOT_APPLIED
    sent = attrs.evolve(
        row,
        state=AdjustmentState.UNKNOWN,
        attempts=row.attempts + 1,
        resends=row.resends + resend,
        sent_note=note,
        error=None,
    )
    ctx.notify(sent)
    try:
        result = await ctx.api.create_credit(
            adjustment.customer_id, adjustment.amount, note=note, force=adjustment.force
        )
    except InveterateError as error:
        state = outcome(error)
        if resend and state in (AdjustmentState.PENDING, AdjustmentState.REJECTED):
            # This POST did nothing, but the first one may yet show up in the ledger.
            state = AdjustmentState.NOT_APPLIED
        if is_auth_failure(error):
            ctx.stop(error)
        ctx.record_soon(sent, state, error=describe(error))
    else:
        entry_id = echoed_entry_id(result, adjustment)
        ctx.record_soon(sent, AdjustmentState.APPLIED, entry_id=entry_id)


def echoed_entry_id(result: CreditResult, adjustment: CreditAdjustment) -> str | None:
    """The new entry's id, when the answer echoes the entry (id and the same amount)."""
    data = result.data
    if not isinstance(data, dict):
        return None
    entry_id = data.get("id")
    if isinstance(entry_id, bool) or not isinstance(entry_id, (str, int)):
        return None
    try:
        same = Decimal(str(data.get("amount"))) == adjustment.amount
    except InvalidOperation:
        return None
    return str(entry_id) if same else None
