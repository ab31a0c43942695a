"""The pass that sends: for each member, its ledger is read once (with tags: before its
first send, and whenever it has rows of uncertain outcome), what the ledger already
shows is recorded, and the rest of its pending rows are sent."""

from __future__ import annotations

from .._errors import InveterateError
from .adjustments import AdjustmentRow, AdjustmentState
from .context import RunContext
from .ledger import (
    Ledger,
    as_candidate,
    contradiction,
    describe,
    find,
    is_auth_failure,
    is_missing_member,
)
from .lookalike import Finding, Verdict
from .members import Unit
from .sending import send
from .stored import Stored

# Rows this run's batch lists and has not sent; rows whose outcome the ledger may tell.
TO_SEND = "run = :run AND state = 'pending'"
UNCERTAIN = (
    "state IN ('unknown', 'not_applied') OR "
    "(state = 'applied' AND (entry_id IS NULL OR resends > 0))"
)
TO_RESEND = "run = :run AND state = 'not_applied' AND resent_run IS NOT :run"

_LATE_FIRST = "a ledger entry carries its tag besides the one its re-send created"


async def send_member(ctx: RunContext, unit: Unit) -> None:
    """Look at the member's ledger if it has something to tell, then send its rows."""
    tagged = ctx.options.tag_notes
    pending = [s for s in unit.rows if s.row.state is AdjustmentState.PENDING]
    uncertain = [s for s in unit.rows if s.row.state is not AdjustmentState.PENDING]
    ledger: Ledger | None = None
    if tagged and ((ctx.options.check_ledger_first and pending) or uncertain):
        if ctx.stopped_by is not None:
            return
        try:
            ledger = await unit.look.ledger()
        except InveterateError as error:
            await _unread(ctx, error, pending, uncertain)
            return
        for stored in uncertain:
            await decide_found(ctx, stored, ledger)
    for stored in pending:
        if ctx.stopped_by is not None:
            return
        row = stored.row
        if ledger is not None and ctx.options.check_ledger_first:
            finding = find(ledger, row)
            if finding.verdict is Verdict.MATCHED and finding.entry is not None:
                await ctx.record(row, AdjustmentState.APPLIED, entry_id=finding.entry.key)
                continue
            if finding.verdict is Verdict.AMBIGUOUS:
                await review(ctx, row, finding)
                continue
        await send(ctx, stored)


async def resend_member(ctx: RunContext, unit: Unit) -> None:
    """Send again a member's rows found not applied (``resend_unconfirmed``)."""
    for stored in unit.rows:
        if ctx.stopped_by is not None:
            return
        await send(ctx, stored)


async def decide_found(ctx: RunContext, stored: Stored, ledger: Ledger) -> bool:
    """Record what the ledger shows of a tagged row of uncertain outcome.

    :returns: whether the ledger decided it (False: its tag is not there).
    """
    row = stored.row
    finding = find(ledger, row)
    if finding.verdict is Verdict.MATCHED and finding.entry is not None:
        key = finding.entry.key
        if (
            row.resends
            and row.entry_id is not None
            and finding.entry.has_id
            and row.entry_id != key
        ):
            # The re-send's answer named its entry; this other tagged one is the first
            # send's, applied late.
            await ctx.record(
                row,
                AdjustmentState.NEEDS_REVIEW,
                candidates=[as_candidate(finding.entry)],
                error=f"{_LATE_FIRST} (entry {row.entry_id}): applied twice",
            )
        elif row.state is not AdjustmentState.APPLIED or row.entry_id != key:
            await ctx.record(row, AdjustmentState.APPLIED, entry_id=key)
        return True
    if finding.verdict is Verdict.AMBIGUOUS:
        await review(ctx, row, finding)
        return True
    return row.state is AdjustmentState.APPLIED  # a 2xx proves it, entry or not


async def review(ctx: RunContext, row: AdjustmentRow, finding: Finding) -> None:
    """Record that the ledger contradicts a tagged row: a person decides."""
    await ctx.record(
        row,
        AdjustmentState.NEEDS_REVIEW,
        candidates=[as_candidate(entry) for entry in finding.candidates],
        error=contradiction(finding, row),
    )


async def _unread(
    ctx: RunContext,
    error: InveterateError,
    pending: list[Stored],
    uncertain: list[Stored],
) -> None:
    """A member's ledger could not be read: nothing of it is sent."""
    if is_auth_failure(error):
        ctx.stop(error)
        return
    text = f"could not read the ledger: {describe(error)}"
    state = AdjustmentState.REJECTED if is_missing_member(error) else AdjustmentState.PENDING
    for stored in pending:
        await ctx.record(stored.row, state, error=text)
    for stored in uncertain:
        await ctx.record(stored.row, stored.row.state, error=text)
