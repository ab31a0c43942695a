"""Reconciling a run's rows of uncertain outcome: read each member's ledger, decide with
:func:`~inveterate_async._reconcile.reconcile`, record the verdicts, and look again until
the settle window is over."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from ._adjustments import AdjustmentRow, AdjustmentState, CandidateEntry
from ._bulk_options import BulkOptions
from ._errors import APIStatusError, InveterateError, RateLimitError
from ._journal import Journal
from ._reconcile import Entry, Finding, Sent, Standing, Verdict, entry_of, reconcile

if TYPE_CHECKING:
    from ._client import InveterateClient

_TWICE = (
    "re-sent after it was found not applied, and the ledger now has more such entries "
    "than rows: its first send may have been applied late (applied twice)"
)


class Record(Protocol):
    """Durably sets a row's state and details, and reports the change."""

    async def __call__(self, ref: str, state: AdjustmentState, **details: Any) -> None: ...


class Reconciler:
    """Decides a journal's rows of uncertain outcome from their members' ledgers."""

    def __init__(
        self, client: InveterateClient, journal: Journal, options: BulkOptions, record: Record
    ) -> None:
        self._client = client
        self._journal = journal
        self._options = options
        self._record = record
        self._settle = timedelta(seconds=options.settle)
        self._skew = timedelta(seconds=options.clock_skew)

    async def members(self) -> list[str]:
        """The members whose ledger has something to tell, in journal order."""
        rows = await self._journal.rows()
        return list(dict.fromkeys(row.adjustment.customer_id for row in rows if _to_check(row)))

    async def member(self, member: str) -> None:
        """Reconcile one member's rows, looking again until no verdict is left to wait for.

        :raises InveterateError: a ledger read was refused (not a transient failure).
        """
        rows = {row.ref: row for row in await self._journal._member_rows(member)}
        sent = {ref: s for ref, row in rows.items() if (s := _as_sent(row)) is not None}
        claimed = await self._journal._claimed(member)
        claimed -= {s.own_entry for s in sent.values() if s.standing is Standing.RESENT}
        deadline = max(s.last_sent_at for s in sent.values()) + self._settle
        while True:
            started = self._options.now()
            try:
                entries = [entry_of(credit) async for credit in self._client.iter_credits(member)]
            except InveterateError as error:
                if not _transient(error):
                    raise
                if started >= deadline:
                    for ref in [r for r, s in sent.items() if s.standing is Standing.UNDECIDED]:
                        text = f"could not read the ledger: {type(error).__name__}: {error}"
                        await self._record(ref, rows[ref].state, error=text)
                    return
                await self._options.sleep(self._options.poll_interval)
                continue
            findings = reconcile(
                sent.values(), entries, claimed, now=started, settle=self._settle, skew=self._skew
            )
            waiting = False
            for finding in findings:
                waiting |= finding.verdict is Verdict.WAIT
                await self._decide(finding, rows, sent, claimed)
            if not waiting:
                return
            await self._options.sleep(self._options.poll_interval)

    async def _decide(
        self,
        finding: Finding,
        rows: dict[str, AdjustmentRow],
        sent: dict[str, Sent],
        claimed: set[str],
    ) -> None:
        ref = finding.ref
        state = rows[ref].state
        if finding.verdict is Verdict.MATCHED and finding.entry is not None:
            claimed.add(finding.entry.key)
            del sent[ref]
            await self._record(ref, AdjustmentState.APPLIED, entry_id=finding.entry.key)
        elif finding.verdict is Verdict.AMBIGUOUS:
            error = _TWICE if sent[ref].standing is Standing.RESENT else None
            sent[ref] = attrs.evolve(sent[ref], standing=Standing.UNDER_REVIEW)
            candidates = [_candidate(entry) for entry in finding.candidates]
            await self._record(
                ref, AdjustmentState.NEEDS_REVIEW, candidates=candidates, error=error
            )
        elif finding.verdict is Verdict.UNCONFIRMED and state is not AdjustmentState.NOT_APPLIED:
            rows[ref] = attrs.evolve(rows[ref], state=AdjustmentState.NOT_APPLIED)
            await self._record(ref, AdjustmentState.NOT_APPLIED)


def _to_check(row: AdjustmentRow) -> bool:
    """Whether a row makes its member's ledger worth reading."""
    if row.state is AdjustmentState.APPLIED:
        return row.resends > 0
    return row.state in (AdjustmentState.UNKNOWN, AdjustmentState.NOT_APPLIED)


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


def _transient(error: InveterateError) -> bool:
    return (
        not isinstance(error, APIStatusError)
        or isinstance(error, RateLimitError)
        or (error.status >= 500)
    )


def _candidate(entry: Entry) -> CandidateEntry:
    note = entry.note or None
    return CandidateEntry(entry.key, entry.amount, note, entry.created_at)
