"""What ``credits apply`` and ``credits journal`` show: plans, progress, summaries, exit codes."""

from __future__ import annotations

import decimal
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from .. import AdjustmentReport, AdjustmentRow, AdjustmentState, CreditAdjustment
from ._exits import EXIT_API_ERROR, EXIT_OUTCOME_UNKNOWN
from ._output import plural

_SUMS = decimal.Context(prec=80)
_UNRESOLVED = (
    AdjustmentState.UNKNOWN,
    AdjustmentState.SENDING,
    AdjustmentState.NOT_APPLIED,
    AdjustmentState.NEEDS_REVIEW,
)
_DONE = frozenset(
    {
        AdjustmentState.APPLIED,
        AdjustmentState.REJECTED,
        AdjustmentState.NOT_APPLIED,
        AdjustmentState.NEEDS_REVIEW,
        AdjustmentState.PENDING,
    }
)
_DETAIL_CHARS = 160


def total(amounts: Iterable[Decimal]) -> Decimal:
    """The exact sum of amounts (exact below 80 digits)."""
    result = Decimal(0)
    for amount in amounts:
        result = _SUMS.add(result, amount)
    return result


def money(amount: Decimal, *, sign: bool = False) -> str:
    """An amount with thousands separators and its exact digits, e.g. ``+5,000.00``."""
    return f"{amount:+,}" if sign else f"{amount:,}"


def exit_code(report: AdjustmentReport) -> int:
    """0 all applied; 3 some unknown, not applied or needing review; else 1 (rejected or
    not sent)."""
    counts = report.counts
    if any(counts[state] for state in _UNRESOLVED):
        return EXIT_OUTCOME_UNKNOWN
    return 0 if report.all_applied else EXIT_API_ERROR


def describe_plan(path: str, batch: Sequence[CreditAdjustment], plan: AdjustmentReport) -> str:
    """What a run would do: the file's totals, what the journal skips, what is sent."""
    members = len({adjustment.customer_id for adjustment in batch})
    refs = {adjustment.ref for adjustment in batch}
    lines = [
        f"{path}: {plural(len(batch), 'adjustment', grouped=True)} for "
        f"{plural(members, 'member', grouped=True)}, net "
        f"{money(total(a.amount for a in batch), sign=True)}"
    ]
    counts = plan.counts
    skipped = counts[AdjustmentState.APPLIED] + counts[AdjustmentState.REJECTED]
    unresolved = sum(counts[state] for state in _UNRESOLVED)
    if skipped or unresolved:
        lines.append(
            f"journal: {counts[AdjustmentState.APPLIED]:,} applied and "
            f"{counts[AdjustmentState.REJECTED]:,} rejected (skipped); {unresolved:,} of "
            "uncertain outcome (reconciled with the ledger first)"
        )
    dropped = sum(1 for row in plan.attention if row.ref not in refs)
    if dropped:
        rows = plural(dropped, "row", grouped=True)
        lines.append(f"journal: {rows} not applied that this file no longer has")
    to_send = [row.adjustment.amount for row in plan.to_send]
    credits = total(amount for amount in to_send if amount > 0)
    debits = total(amount for amount in to_send if amount < 0)
    lines.append(
        f"to send: {plural(len(to_send), 'adjustment', grouped=True)}, net "
        f"{money(credits + debits, sign=True)} "
        f"(added {money(credits)}, removed {money(-debits)})"
    )
    return "\n".join(lines)


def print_report(console: Console, report: AdjustmentReport, *, limit: int | None) -> None:
    """The summary table, then up to ``limit`` rows needing attention (None: all)."""
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("state")
    table.add_column("rows", justify="right")
    table.add_column("amount", justify="right")
    for state in AdjustmentState:
        if report.counts[state]:
            count, amount = report.counts[state], report.sums[state]
            table.add_row(state.value, f"{count:,}", money(amount))
    table.add_row("total", f"{report.total:,}", money(total(report.sums.values())), style="bold")
    console.print(table)
    rows = report.attention if limit is None else report.attention[:limit]
    if not rows:
        return
    console.print(f"\n{plural(len(report.attention), 'row', grouped=True)} to look at:")
    attention = Table(box=None, header_style="bold", pad_edge=False)
    for name in ("ref", "member_id", "amount", "state", "details"):
        attention.add_column(name, justify="right" if name == "amount" else "left")
    for row in rows:
        attention.add_row(
            escape(row.ref),
            escape(row.adjustment.customer_id),
            money(row.adjustment.amount),
            row.state.value,
            escape(_details(row)),
        )
    console.print(attention)
    hidden = len(report.attention) - len(rows)
    if hidden:
        console.print(f"... and {hidden:,} more (inveterate credits journal FILE --limit 0)")


def _details(row: AdjustmentRow) -> str:
    if row.state is AdjustmentState.NEEDS_REVIEW:
        found = ", ".join(
            f"{c.entry_id} at {c.created_at.isoformat() if c.created_at else '?'}"
            for c in row.candidates
        )
        return f"{len(row.candidates)} look-alike ledger entries: {found}"
    if row.state is AdjustmentState.NOT_APPLIED:
        text = "not in the ledger after the settle window (--resend-unconfirmed sends it again)"
    elif row.state is AdjustmentState.PENDING and not row.error:
        text = "not sent"
    else:
        text = row.error or ""
    return text if len(text) <= _DETAIL_CHARS else text[: _DETAIL_CHARS - 3] + "..."


class BatchTracker:
    """Counts row outcomes for the progress bar; shows nothing by itself."""

    def __init__(self) -> None:
        self.states: dict[str, AdjustmentState] = {}

    def __call__(self, row: AdjustmentRow) -> None:
        self.states[row.ref] = row.state
        self.refresh()

    def refresh(self) -> None:
        """Redraw (the base class draws nothing)."""

    def count(self, state: AdjustmentState) -> int:
        """Rows whose latest state this run is ``state``."""
        return sum(1 for seen in self.states.values() if seen is state)

    def done(self) -> int:
        """Rows that reached an outcome this run."""
        return sum(1 for seen in self.states.values() if seen in _DONE)


class _RichTracker(BatchTracker):
    def __init__(self, progress: Progress, task: TaskID) -> None:
        super().__init__()
        self._progress = progress
        self._task = task

    def refresh(self) -> None:
        states = AdjustmentState
        outcome = (
            f"applied {self.count(states.APPLIED):,} · rejected {self.count(states.REJECTED):,}"
            f" · reconciling {self.count(states.UNKNOWN):,}"
            f" · not applied {self.count(states.NOT_APPLIED):,}"
            f" · review {self.count(states.NEEDS_REVIEW):,}"
        )
        self._progress.update(self._task, completed=self.done(), outcome=outcome)


@contextmanager
def batch_progress(enabled: bool, *, total: int) -> Iterator[BatchTracker]:
    """A bar of rows done out of ``total``, with counts per outcome, on stderr."""
    if not enabled:
        yield BatchTracker()
        return
    progress = Progress(
        SpinnerColumn(),
        TextColumn("applying"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[outcome]}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        redirect_stdout=False,
        redirect_stderr=True,  # log lines (-v) print above the display
    )
    with progress:
        task = progress.add_task("apply", total=total, outcome="")
        yield _RichTracker(progress, task)
