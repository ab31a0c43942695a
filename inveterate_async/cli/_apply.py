"""``credits apply`` (a batch file through a journal) and ``credits journal`` (its state)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import click
from rich.console import Console

from .. import AdjustmentReport, AdjustmentState, CreditAdjustment, Journal, JournalError
from ._batchfile import BatchFileError, read_batch
from ._bulk_output import batch_progress, describe_plan, exit_code, print_report
from ._core import Settings, connect, require_key
from ._credits import pass_settings
from ._exits import CliError, Interrupted, Terminated, UsageFailure, run
from ._output import plural
from ._terminal import is_terminal

T = TypeVar("T")

_ATTENTION_SHOWN = 20


@click.command("apply")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--journal",
    "journal_path",
    required=True,
    type=click.Path(dir_okay=False),
    metavar="FILE.sqlite",
    help="The run's journal (created if missing). Re-run with the same one to resume.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    metavar="N",
    help="Adjustments sent (and ledgers read) at the same time.",
)
@click.option("--dry-run", is_flag=True, help="Show what would be sent; send and write nothing.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option(
    "--tag-notes",
    is_flag=True,
    help='Append " [ref:REF]" to each note, so that reconciliation is exact.',
)
@click.option(
    "--settle",
    type=click.FloatRange(min=0),
    default=300.0,
    show_default=True,
    metavar="SECONDS",
    help="How long a write may take to show in the ledger before it counts as not applied.",
)
@click.option(
    "--resend-unconfirmed",
    is_flag=True,
    help="Send again the adjustments not found in the ledger after the settle window "
    "(otherwise you are asked, on a terminal).",
)
@pass_settings
def apply_command(
    settings: Settings,
    file: str,
    journal_path: str,
    concurrency: int,
    dry_run: bool,
    yes: bool,
    tag_notes: bool,
    settle: float,
    resend_unconfirmed: bool,
) -> None:
    """Apply every adjustment of FILE exactly once, recording each in a journal.

    FILE is CSV (with a header) or JSON Lines with columns ref, member_id, amount, note
    and force; amounts are plain decimals such as 5.00 or -2.50. Every line is checked
    before anything is sent.

    Writes of unknown outcome (500s, timeouts, a crash) are looked up in the member's
    ledger before anything is sent again. Exit codes: 0 all applied, 1 some rejected or
    not sent, 3 some of unknown outcome or needing review (see `credits journal`).
    """
    require_key(settings)
    try:
        batch = read_batch(file)
    except BatchFileError as exc:
        raise UsageFailure(str(exc)) from None
    options: dict[str, Any] = {
        "concurrency": concurrency,
        "tag_notes": tag_notes,
        "settle": settle,
        "resend_unconfirmed": resend_unconfirmed,
    }

    async def plan() -> AdjustmentReport:
        async with connect(settings) as client:
            return await client.apply_credits(batch, journal_path, dry_run=True, **options)

    planned = _run(plan, journal_path)
    click.echo(describe_plan(file, batch, planned), err=True)
    stdout = Console(highlight=False)
    if dry_run:
        for row in planned.to_send:
            adjustment = row.adjustment
            note = adjustment.tagged_note() if tag_notes else adjustment.note
            click.echo(f"{adjustment.ref}\t{adjustment.customer_id}\t{adjustment.amount}\t{note}")
        click.echo("dry run: nothing was sent or written", err=True)
        return
    uncertain = sum(1 for row in planned.attention if row.state in _RECONCILED)
    may_send = planned.to_send or (resend_unconfirmed and uncertain)
    if may_send and not yes:
        if not is_terminal(sys.stdin):
            raise UsageFailure(
                "refusing to send without confirmation: stdin is not a terminal; pass --yes"
            )
        if not click.confirm("Send them?", default=False, err=True):
            raise CliError("cancelled: nothing was sent")
    work = len(planned.to_send) + uncertain
    report = _apply(settings, batch, journal_path, options, total=work)
    if report.counts[AdjustmentState.NOT_APPLIED] and not resend_unconfirmed:
        count = report.counts[AdjustmentState.NOT_APPLIED]
        question = (
            f"{plural(count, 'adjustment', grouped=True)} not in the ledger {settle:g} s after "
            "being sent "
            "(they failed before being applied, or the API is slower than that). Send them "
            "again?"
        )
        if is_terminal(sys.stdin) and click.confirm(question, default=False, err=True):
            options["resend_unconfirmed"] = True
            report = _apply(settings, batch, journal_path, options, total=count)
    print_report(stdout, report, limit=_ATTENTION_SHOWN)
    code = exit_code(report)
    if code:
        click.get_current_context().exit(code)


_RECONCILED = frozenset(
    {AdjustmentState.UNKNOWN, AdjustmentState.SENDING, AdjustmentState.NOT_APPLIED}
)


def _apply(
    settings: Settings,
    batch: list[CreditAdjustment],
    journal_path: str,
    options: dict[str, Any],
    *,
    total: int,
) -> AdjustmentReport:
    with batch_progress(is_terminal(sys.stderr), total=total) as tracker:

        async def main() -> AdjustmentReport:
            async with connect(settings) as client:
                return await client.apply_credits(
                    batch, journal_path, on_progress=tracker, **options
                )

        return _run(main, journal_path)


def _run(main: Callable[[], Coroutine[Any, Any, T]], journal_path: str) -> T:
    """Run with the one runner: SIGINT and SIGTERM cancel the work, rows being sent are
    recorded as unknown, and the journal is closed before the exit (130 or 143)."""

    async def guarded() -> T:
        try:
            return await main()
        except JournalError as exc:
            raise UsageFailure(str(exc)) from None

    try:
        return run(guarded())
    except Interrupted as stopped:
        word = "terminated" if isinstance(stopped, Terminated) else "interrupted"
        raise type(stopped)(
            f"{word}: the journal {journal_path} is consistent; run the same command again "
            "to resume (adjustments that were being sent are looked up in the ledger first)"
        ) from None


@click.command("journal")
@click.argument("journal_path", metavar="FILE.sqlite", type=click.Path(dir_okay=False))
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=50,
    show_default=True,
    metavar="N",
    help="Rows needing attention to list (0: all).",
)
def journal_command(journal_path: str, limit: int) -> None:
    """Show a journal's state: counts per outcome, and the rows that need attention.

    Reads without the lock, so it works while `credits apply` runs. Exits like
    `credits apply`: 0 all applied, 1 some rejected or not sent, 3 some uncertain.
    """

    async def main() -> AdjustmentReport:
        async with Journal(journal_path, read_only=True) as journal:
            return await journal.report()

    report = _run(main, journal_path)
    print_report(Console(highlight=False), report, limit=limit or None)
    code = exit_code(report)
    if code:
        click.get_current_context().exit(code)
