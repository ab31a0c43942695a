"""What ``credits apply`` and ``credits journal`` show: plans, progress, summaries, exit codes."""

from __future__ import annotations

import decimal
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from decimal import Decimal

import click
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

from .. import AdjustmentReport, AdjustmentRow, AdjustmentState
from ._batchfile import BatchFile
from ._exits import EXIT_API_ERROR, EXIT_OUTCOME_UNKNOWN
from ._output import plural

_SUMS = decimal.Context(prec=80)
_UNRESOLVED = (
    AdjustmentState.UNKNOWN,
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


class Plan:
    """Collects a dry run's rows to send (their totals), printing each if asked."""

    def __init__(self, *, show_rows: bool, tag_notes: bool) -> None:
        self.show_rows = show_rows
        self.tag_notes = tag_notes
        self.added = Decimal(0)
        self.removed = Decimal(0)

    def __call__(self, row: AdjustmentRow) -> None:
        amount = row.adjustment.amount
        if amount > 0:
            self.added = _SUMS.add(self.added, amount)
        else:
            self.removed = _SUMS.add(self.removed, -amount)
        if self.show_rows:
            adjustment = row.adjustment
            note = row.sent_note
            if note is None:
                note = adjustment.tagged_note() if self.tag_notes else adjustment.note
            click.echo(f"{adjustment.ref}\t{adjustment.customer_id}\t{amount}\t{note}")


def describe_plan(batch: BatchFile, plan: Plan, planned: AdjustmentReport) -> str:
    """What a run would do: the file's totals, what the journal skips, what is sent."""
    lines = [
        f"{batch.path}: {plural(batch.adjustments, 'adjustment', grouped=True)}, net "
        f"{money(batch.net, sign=True)}"
    ]
    counts = planned.counts
    skipped = counts[AdjustmentState.APPLIED] + counts[AdjustmentState.REJECTED]
    unresolved = sum(counts[state] for state in _UNRESOLVED)
    if skipped or unresolved:
        lines.append(
            f"journal: {counts[AdjustmentState.APPLIED]:,} applied and "
            f"{counts[AdjustmentState.REJECTED]:,} rejected (skipped); {unresolved:,} of "
            "uncertain outcome (looked up in the ledger first)"
        )
    lines.append(
        f"to send: {plural(planned.to_send_total, 'adjustment', grouped=True)}, net "
        f"{money(plan.added - plan.removed, sign=True)} "
        f"(added {money(plan.added)}, removed {money(plan.removed)}), unless the ledger "
        "already shows them"
    )
    return "\n".join(lines)


def stdout_console() -> Console:
    """The console that reports go to."""
    return Console(highlight=False)


def print_report(
    console: Console, report: AdjustmentReport, *, limit: int | None, journal: str
) -> None:
    """The summary table, then up to ``limit`` rows needing attention (None: all of
    those the report lists)."""
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
    waiting = report.total - report.counts[AdjustmentState.APPLIED]
    console.print(f"\n{plural(waiting, 'row', grouped=True)} to look at:")
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
    hidden = waiting - len(rows)
    if hidden:
        console.print(
            f"... and {hidden:,} more (inveterate credits journal {escape(journal)} --limit 0)"
        )


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
    """Counts row outcomes for the progress bar; shows nothing by itself.

    It keeps the rows whose latest state is not applied (few, in a healthy run) and
    counts the applied ones, so its memory does not grow with the batch.
    """

    def __init__(self) -> None:
        self._open: dict[str, AdjustmentState] = {}
        self._applied = 0

    def __call__(self, row: AdjustmentRow) -> None:
        was_open = self._open.pop(row.ref, None) is not None
        if not was_open and row.state is AdjustmentState.NEEDS_REVIEW and row.resends:
            self._applied -= 1  # applied after a re-send, then found applied twice
        if row.state is AdjustmentState.APPLIED:
            self._applied += 1
        else:
            self._open[row.ref] = row.state
        self.refresh()

    def refresh(self) -> None:
        """Redraw (the base class draws nothing)."""

    def count(self, state: AdjustmentState) -> int:
        """Rows whose latest state this run is ``state``."""
        if state is AdjustmentState.APPLIED:
            return self._applied
        return sum(1 for seen in self._open.values() if seen is state)

    def done(self) -> int:
        """Rows that reached an outcome this run."""
        return self._applied + sum(1 for seen in self._open.values() if seen in _DONE)


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
def batch_progress(enabled: bool) -> Iterator[BatchTracker]:
    """Rows done, with counts per outcome, on stderr."""
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
        task = progress.add_task("apply", total=None, outcome="")
        yield _RichTracker(progress, task)
