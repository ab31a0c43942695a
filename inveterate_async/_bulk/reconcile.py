"""The reconciling pass: rows of uncertain outcome are decided from their members'
ledgers, looking again until the settle window is over.

A row becomes not applied only after two reads of its member's ledger in this pass
without it, the last one started after its window: ``settle`` seconds on the run's
monotonic clock after it was sent in this run, or after this pass first tried the
ledger for a row sent in an earlier run (a wall clock that steps ends no window, and
time between runs cannot be measured on a monotonic clock). A row found not applied in
an earlier run waits the same way before it is re-sent.
"""

from __future__ import annotations

from datetime import timedelta

import attrs

from .._errors import InveterateError
from .adjustments import AdjustmentRow, AdjustmentState
from .context import RunContext
from .ledger import as_candidate, describe, is_auth_failure, is_transient, read_ledger
from .lookalike import Finding, Sent, Standing, Verdict, reconcile
from .members import Unit
from .send_pass import decide_found
from .stored import Stored
from .tags import ref_of

TAGGED = (
    "state = 'unknown' OR "
    "(state = 'applied' AND sent_run = :run AND (entry_id IS NULL OR resends > 0))"
)
# Rows an earlier run found not applied, about to be re-sent by this one.
EARLIER_NOT_APPLIED = (
    "state = 'not_applied' AND run = :run AND sent_run IS NOT :run AND resent_run IS NOT :run"
)
UNTAGGED = (
    "state IN ('unknown', 'not_applied') OR "
    "(state = 'applied' AND (entry_id IS NULL OR resends > 0))"
)

_TWICE = (
    "re-sent after it was found not applied, and the ledger now has more such entries "
    "than rows: its first send may have been applied late (applied twice)"
)


class Windows:
    """When each row's settle window ends, on the run's clock."""

    def __init__(self, ctx: RunContext) -> None:
        self._ctx = ctx
        self.first_try: float | None = None

    def end(self, stored: Stored) -> float:
        """The end of a row's window (``first_try`` must be set)."""
        settle: float = self._ctx.options.settle
        if stored.sent_run == self._ctx.run and stored.sent_clock is not None:
            return float(stored.sent_clock) + settle
        assert self.first_try is not None
        return self.first_try + settle


async def reconcile_member(ctx: RunContext, unit: Unit) -> None:
    """Decide a member's rows of uncertain outcome, each by how it was sent: a row sent
    without its tag (untagged runs, journals of earlier versions) by the look-alike
    matcher, the others by their tags."""
    if not ctx.options.tag_notes:
        if unit.look.claim():
            await _untagged(ctx, unit.member)
        return
    tagged = [stored for stored in unit.rows if sent_tagged(stored.row)]
    if len(tagged) < len(unit.rows) and unit.look.claim():
        await _untagged(ctx, unit.member)
    await _tagged(ctx, tagged, unit.member)


def sent_tagged(row: AdjustmentRow) -> bool:
    """Whether the row was sent with its tag."""
    return ref_of(row.sent_note) == row.ref


async def _tagged(ctx: RunContext, rows: list[Stored], member: str) -> None:
    waiting = rows
    windows = Windows(ctx)
    reads = 0
    while waiting and ctx.stopped_by is None:
        started = ctx.options.clock()
        if windows.first_try is None:
            windows.first_try = started
        try:
            ledger = await read_ledger(ctx.api, member, keep_all=False)
        except InveterateError as error:
            if await _unread(ctx, error, waiting, windows, started):
                return
            await ctx.options.sleep(ctx.options.poll_interval)
            continue
        reads += 1
        still = []
        for stored in waiting:
            if await decide_found(ctx, stored, ledger):
                continue
            if reads >= 2 and started >= windows.end(stored):
                if stored.row.state is AdjustmentState.UNKNOWN:
                    await ctx.record(stored.row, AdjustmentState.NOT_APPLIED)
            else:
                still.append(stored)
        waiting = still
        if waiting:
            await ctx.options.sleep(ctx.options.poll_interval)


async def _unread(
    ctx: RunContext,
    error: InveterateError,
    waiting: list[Stored],
    windows: Windows,
    started: float,
) -> bool:
    """Handle a failed ledger read; True when the member is left as it is."""
    if is_auth_failure(error):
        ctx.stop(error)
        return True
    if is_transient(error) and any(started < windows.end(stored) for stored in waiting):
        return False  # try again within the window
    text = f"could not read the ledger: {describe(error)}"
    for stored in waiting:
        await ctx.record(stored.row, stored.row.state, error=text)
    return True


async def _untagged(ctx: RunContext, member: str) -> None:
    stored = {s.row.ref: s for s in await ctx.journal._member_stored(member)}
    if ctx.options.tag_notes:  # the rows sent with tags are decided by them
        stored = {ref: s for ref, s in stored.items() if not sent_tagged(s.row)}
    rows = {ref: s.row for ref, s in stored.items()}
    sent = {ref: s for ref, row in rows.items() if (s := _as_sent(row)) is not None}
    if not any(s.standing in (Standing.UNDECIDED, Standing.RESENT) for s in sent.values()):
        return
    claimed = await ctx.journal._claimed(member)
    claimed -= {s.own_entry for s in sent.values() if s.standing is Standing.RESENT}
    skew = timedelta(seconds=ctx.options.clock_skew)
    windows = Windows(ctx)
    reads = 0
    while ctx.stopped_by is None:
        started = ctx.options.clock()
        if windows.first_try is None:
            windows.first_try = started
        try:
            ledger = await read_ledger(ctx.api, member, keep_all=True)
        except InveterateError as error:
            undecided = [stored[r] for r, s in sent.items() if s.standing is Standing.UNDECIDED]
            if await _unread(ctx, error, undecided, windows, started):
                return
            await ctx.options.sleep(ctx.options.poll_interval)
            continue
        reads += 1

        def settled(row: Sent, reads: int = reads, started: float = started) -> bool:
            if rows[row.ref].state is AdjustmentState.NOT_APPLIED:
                return True  # its window ended in an earlier pass
            return reads >= 2 and started >= windows.end(stored[row.ref])

        findings = reconcile(sent.values(), ledger.entries, claimed, settled=settled, skew=skew)
        waiting = False
        for finding in findings:
            waiting |= finding.verdict is Verdict.WAIT
            await _decide(ctx, finding, rows, sent, claimed)
        if not waiting:
            return
        await ctx.options.sleep(ctx.options.poll_interval)


async def _decide(
    ctx: RunContext,
    finding: Finding,
    rows: dict[str, AdjustmentRow],
    sent: dict[str, Sent],
    claimed: set[str],
) -> None:
    ref = finding.ref
    row = rows[ref]
    if finding.verdict is Verdict.MATCHED and finding.entry is not None:
        claimed.add(finding.entry.key)
        del sent[ref]
        if row.state is not AdjustmentState.APPLIED or row.entry_id != finding.entry.key:
            rows[ref] = await ctx.record(row, AdjustmentState.APPLIED, entry_id=finding.entry.key)
    elif finding.verdict is Verdict.AMBIGUOUS:
        error = _TWICE if sent[ref].standing is Standing.RESENT else None
        sent[ref] = attrs.evolve(sent[ref], standing=Standing.UNDER_REVIEW)
        candidates = [as_candidate(entry) for entry in finding.candidates]
        rows[ref] = await ctx.record(
            row, AdjustmentState.NEEDS_REVIEW, candidates=candidates, error=error
        )
    elif finding.verdict is Verdict.UNCONFIRMED and row.state is AdjustmentState.UNKNOWN:
        rows[ref] = await ctx.record(row, AdjustmentState.NOT_APPLIED)


def _as_sent(row: AdjustmentRow) -> Sent | None:
    standing = {
        AdjustmentState.UNKNOWN: Standing.UNDECIDED,
        AdjustmentState.NOT_APPLIED: Standing.UNDECIDED,
        AdjustmentState.NEEDS_REVIEW: Standing.UNDER_REVIEW,
    }.get(row.state)
    if row.state is AdjustmentState.APPLIED:
        if row.resends:
            standing = Standing.RESENT
        elif row.entry_id is None:
            standing = Standing.CONFIRMED
    if standing is None or row.first_sent_at is None or row.last_sent_at is None:
        return None  # never sent, or applied with its entry known
    return Sent(
        row.ref,
        row.adjustment.amount,
        row.sent_note or "",
        row.first_sent_at,
        row.last_sent_at,
        standing,
        own_entry=row.entry_id,
    )
