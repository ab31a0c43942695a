"""``credits apply`` (a batch file through a journal) and ``credits journal`` (its state)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import click

from .. import (
    AdjustmentReport,
    AdjustmentState,
    APIStatusError,
    Journal,
    JournalError,
    JournalWriteError,
)
from ._batchfile import BatchFile, BatchFileError
from ._bulk_output import (
    Plan,
    batch_progress,
    describe_plan,
    exit_code,
    print_report,
    stdout_console,
)
from ._core import Settings, connect, require_key
from ._credits import pass_settings
from ._exits import (
    CliError,
    Interrupted,
    KeyRefused,
    OutcomeUnknown,
    Terminated,
    UsageFailure,
    describe,
    run,
)
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
    help="Members worked on (and requests made) at the same time.",
)
@click.option("--dry-run", is_flag=True, help="Show what would be sent; send and write nothing.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option(
    "--tag-notes/--no-tag-notes",
    default=True,
    show_default=True,
    help='Append " [ref:REF]" to each note, so that the ledger says which row made each '
    "entry. --no-tag-notes matches entries by amount and note: a weaker guarantee.",
)
@click.option(
    "--check-ledger-first/--no-check-ledger-first",
    default=None,
    help="Read each member's ledger before its first send, so that a ref already there is "
    "not sent again (default: on with tags). Off only for a batch you know is new.",
)
@click.option(
    "--decimal-places",
    type=click.IntRange(min=0),
    default=2,
    show_default=True,
    metavar="N",
    help="Refuse amounts with more decimal places (a typo such as 5.005).",
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
    check_ledger_first: bool | None,
    decimal_places: int,
    settle: float,
    resend_unconfirmed: bool,
) -> None:
    """Apply every adjustment of FILE exactly once, recording each in a journal.

    FILE is CSV (with a header) or JSON Lines with columns ref, member_id, amount, note
    and force; amounts are plain decimals such as 5.00 or -2.50. Every line is checked
    before anything is sent. Each note is tagged with its ref, and each member's ledger
    is read before its first send: what it already shows is not sent again.

    Writes of unknown outcome (500s, timeouts, a crash) are looked up in the member's
    ledger before anything is sent again. Exit codes: 0 all applied, 1 some rejected or
    not sent, 3 some of unknown outcome or needing review (see `credits journal`), 4 the
    API refused the key (run again with the right one to finish).
    """
    require_key(settings)
    if check_ledger_first and not tag_notes:
        raise UsageFailure("--check-ledger-first needs tags: drop --no-tag-notes")
    batch = BatchFile(file, max_decimal_places=decimal_places)
    options: dict[str, Any] = {
        "concurrency": concurrency,
        "tag_notes": tag_notes,
        "check_ledger_first": check_ledger_first,
        "settle": settle,
        "resend_unconfirmed": resend_unconfirmed,
    }
    if not tag_notes:
        click.echo(
            "warning: --no-tag-notes: entries are matched by amount and note, so a lost "
            "journal or look-alike entries can need a person (docs/bulk.md)",
            err=True,
        )
    if dry_run or not yes:
        plan = Plan(show_rows=dry_run, tag_notes=tag_notes)

        async def planning() -> AdjustmentReport:
            async with connect(settings) as client:
                return await client.apply_credits(
                    batch, journal_path, dry_run=True, on_progress=plan, **options
                )

        planned = _run(planning, journal_path)
        click.echo(describe_plan(batch, plan, planned), err=True)
        if dry_run:
            click.echo("dry run: nothing was sent or written", err=True)
            return
        uncertain = sum(planned.counts[state] for state in _RECONCILED)
        if (planned.to_send_total or uncertain) and not _confirmed():
            raise CliError("cancelled: nothing was sent")
    report = _apply(settings, batch, journal_path, options)
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
            report = _apply(settings, batch, journal_path, options)
    print_report(stdout_console(), report, limit=_ATTENTION_SHOWN, journal=journal_path)
    code = exit_code(report)
    if code:
        click.get_current_context().exit(code)


def _confirmed() -> bool:
    if not is_terminal(sys.stdin):
        raise UsageFailure(
            "refusing to send without confirmation: stdin is not a terminal; pass --yes"
        )
    return click.confirm("Send them?", default=False, err=True)


_RECONCILED = (AdjustmentState.UNKNOWN, AdjustmentState.NOT_APPLIED)


def _apply(
    settings: Settings, batch: BatchFile, journal_path: str, options: dict[str, Any]
) -> AdjustmentReport:
    with batch_progress(is_terminal(sys.stderr)) as tracker:

        async def main() -> AdjustmentReport:
            async with connect(settings) as client:
                try:
                    return await client.apply_credits(
                        batch, journal_path, on_progress=tracker, **options
                    )
                except APIStatusError as error:
                    if not error.is_auth_error:
                        raise
                    raise KeyRefused(
                        f"{describe(error)}: the API refused the key, so the run stopped; "
                        f"the adjustments not sent are pending in {journal_path}: run the "
                        "same command again with the right key to finish"
                    ) from None

        return _run(main, journal_path)


def _run(main: Callable[[], Coroutine[Any, Any, T]], journal_path: str) -> T:
    """Run with the one runner: SIGINT and SIGTERM cancel the work, rows being sent are
    recorded as unknown, and the journal is closed before the exit (130 or 143)."""

    async def guarded() -> T:
        try:
            return await main()
        except JournalWriteError as exc:
            raise OutcomeUnknown(str(exc)) from None
        except JournalError as exc:
            raise UsageFailure(str(exc)) from None
        except BatchFileError as exc:
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
    print_report(stdout_console(), report, limit=limit or None, journal=journal_path)
    code = exit_code(report)
    if code:
        click.get_current_context().exit(code)
