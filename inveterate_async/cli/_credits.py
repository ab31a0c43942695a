"""The ``credits`` commands: ``list``, ``export`` and ``add``."""

from __future__ import annotations

import asyncio
import shlex
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from decimal import Decimal
from typing import Any, TextIO

import click

from .. import MemberFailure
from .._request import amount_json
from ._core import (
    NO_KEY_MESSAGE,
    ExportResult,
    LedgerState,
    Settings,
    connect,
    count_member_ids,
    export_ledgers,
    read_member_ids,
    write_ledger,
)
from ._exits import CliError, Interrupted, UsageFailure, describe, run
from ._output import CREDIT_COLUMNS, EXPORT_COLUMNS, FORMATS, json_text, make_writer
from ._progress import export_progress, ledger_progress
from ._terminal import is_terminal

pass_settings = click.make_pass_decorator(Settings)


def _require_key(settings: Settings) -> None:
    if not settings.sandbox and not settings.api_key:
        raise UsageFailure(NO_KEY_MESSAGE)


def _list_command(settings: Settings, member_id: str, cursor: str | None = None) -> str:
    """The ``credits list`` command line for ``member_id``, quoted for a shell."""
    prefix = "inveterate --sandbox" if settings.sandbox else "inveterate"
    command = f"{prefix} credits list {shlex.quote(member_id)}"
    return command if cursor is None else f"{command} --cursor {shlex.quote(cursor)}"


@click.group("credits")
def credits_group() -> None:
    """Read and write members' credit ledgers."""


@credits_group.command("list")
@click.argument("member_id")
@click.option("--page-size", type=click.IntRange(min=1), metavar="N", help="Credits per request.")
@click.option("--cursor", metavar="C", help="Start after this cursor (printed by a stopped run).")
@click.option("--max-items", type=click.IntRange(min=1), metavar="N", help="Stop after N credits.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    help="Output format [default: table on a terminal, else jsonl].",
)
@pass_settings
def list_credits(
    settings: Settings,
    member_id: str,
    page_size: int | None,
    cursor: str | None,
    max_items: int | None,
    fmt: str | None,
) -> None:
    """Stream MEMBER_ID's credit ledger, oldest first."""
    _require_key(settings)
    stdout_tty = is_terminal(sys.stdout)
    writer = make_writer(fmt or ("table" if stdout_tty else "jsonl"), None, CREDIT_COLUMNS)
    state = LedgerState(resume=cursor or None)

    async def main() -> None:
        async with connect(settings) as client:
            with ledger_progress(is_terminal(sys.stderr), redirect_stdout=stdout_tty) as tracker:
                await write_ledger(
                    client,
                    member_id,
                    writer,
                    state,
                    page_size=page_size,
                    max_items=max_items,
                    tracker=tracker,
                )

    try:
        run(main())
        writer.close()
    except CliError as exc:
        if type(exc) not in (CliError, Interrupted) or state.printed == 0:
            raise
        raise type(exc)(f"{exc.message}\n{_resume_hint(settings, member_id, state)}") from None
    if state.more is not None:
        click.echo(
            f"stopped after {state.printed} credits (--max-items); more with: "
            + _list_command(settings, member_id, state.more),
            err=True,
        )


def _resume_hint(settings: Settings, member_id: str, state: LedgerState) -> str:
    if state.resume is None:  # stopped while printing the first page
        return "no page was printed completely: to resume, run the same command again"
    return (
        f"{state.printed} credits printed; to resume after them (same options): "
        + _list_command(settings, member_id, state.resume)
    )


@credits_group.command("export")
@click.argument("member_ids", nargs=-1, metavar="[MEMBER_ID]...")
@click.option(
    "--ids-file",
    type=click.Path(exists=True, dir_okay=False, allow_dash=True),
    metavar="FILE|-",
    help="Read member ids from FILE (- for stdin), one per line; blank lines are skipped.",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, allow_dash=True),
    metavar="FILE",
    help="Where to write the rows (- for stdout).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "jsonl"]),
    help="Row format [default: jsonl for a .jsonl/.ndjson --out, else csv].",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    metavar="N",
    help="Members read at the same time.",
)
@click.option("--page-size", type=click.IntRange(min=1), metavar="N", help="Credits per request.")
@pass_settings
def export_credits(
    settings: Settings,
    member_ids: tuple[str, ...],
    ids_file: str | None,
    out: str,
    fmt: str | None,
    concurrency: int,
    page_size: int | None,
) -> None:
    """Export the ledgers of many members to one CSV or JSON Lines file.

    One row per credit: member_id, created_at, amount, new_balance, reason, note, id.
    Members that fail are listed at the end (the rows of the others are all written).
    """
    _require_key(settings)
    if not member_ids and ids_file is None:
        raise click.UsageError("nothing to export: give MEMBER_IDs and/or --ids-file")
    if fmt is None:
        fmt = "jsonl" if out.lower().endswith((".jsonl", ".ndjson")) else "csv"
    progress = is_terminal(sys.stderr)
    total: int | None = len(member_ids)
    if ids_file == "-":
        total = None
    elif ids_file is not None:
        total = len(member_ids) + count_member_ids(ids_file) if progress else None
    result = ExportResult()
    target = "stdout" if out == "-" else out

    with ExitStack() as files:
        ids_stream: TextIO | None = None
        if ids_file == "-":
            ids_stream = sys.stdin
        elif ids_file is not None:
            ids_stream = files.enter_context(open(ids_file, encoding="utf-8-sig"))
        out_stream: TextIO | None = None
        if out != "-":
            try:
                out_stream = files.enter_context(open(out, "w", encoding="utf-8", newline=""))
            except OSError as exc:
                raise UsageFailure(f"cannot write {out}: {exc.strerror}") from None
        writer = make_writer(fmt, out_stream, EXPORT_COLUMNS)

        async def main() -> float:
            loop = asyncio.get_running_loop()
            started = loop.time()
            async with connect(settings) as client:
                with export_progress(progress, total=total) as tracker:
                    await export_ledgers(
                        client,
                        read_member_ids(member_ids, ids_stream),
                        writer,
                        result,
                        concurrency=concurrency,
                        page_size=page_size,
                        tracker=tracker,
                    )
            return loop.time() - started

        try:
            seconds = run(main())
        except Interrupted:
            writer.close()
            raise Interrupted(
                f"interrupted: {result.rows} credits of {result.members_done} members were "
                f"written to {target} (incomplete)" + _failure_lines(settings, result.failures)
            ) from None
        writer.close()
    click.echo(
        f"exported {result.rows} credits of {result.members_done} members to {target} "
        f"in {seconds:.2f} s",
        err=True,
    )
    if result.failures:
        failed = len(result.failures)
        raise CliError(
            f"{failed} of {result.members_done} members failed (the rows of the other "
            f"{result.members_done - failed} were written):"
            + _failure_lines(settings, result.failures)
        )


def _failure_lines(settings: Settings, failures: Sequence[MemberFailure]) -> str:
    lines = []
    for failure in failures:
        member_id = str(failure.customer_id)
        lines.append(f"\n  {member_id}: {describe(failure.error)}")
        if failure.cursor is not None:
            lines.append(
                "\n    its earlier credits were written; the rest: "
                + _list_command(settings, member_id, failure.cursor)
            )
    return "".join(lines)


@credits_group.command(
    "add",
    short_help="Add (or, with a negative AMOUNT, remove) store credit.",
    context_settings={"ignore_unknown_options": True},  # lets AMOUNT be -2.50
)
@click.argument("member_id")
@click.argument("amount")
@click.option("--note", metavar="TEXT", help="A note stored with the credit.")
@click.option(
    "--force",
    is_flag=True,
    help="With a negative amount: disable active credit redemption discount codes if needed.",
)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@pass_settings
def add_credit(
    settings: Settings, member_id: str, amount: str, note: str | None, force: bool, yes: bool
) -> None:
    """Add AMOUNT of store credit to MEMBER_ID (a negative AMOUNT removes credit).

    AMOUNT is sent with its exact digits, e.g. 10.00 or -2.50.
    """
    _require_key(settings)
    try:
        amount_json(amount)
    except ValueError as exc:
        raise UsageFailure(f"invalid AMOUNT: {exc}") from None
    if not yes:
        if not is_terminal(sys.stdin):
            raise UsageFailure(
                "refusing to write without confirmation: stdin is not a terminal; "
                "pass --yes to add the credit"
            )
        if not click.confirm(_confirmation(member_id, amount), default=False):
            raise CliError("cancelled: nothing was sent")

    async def main() -> tuple[str, Any]:
        async with connect(settings) as client:
            result = await client.create_credit(
                member_id, amount, note=note, force=True if force else None
            )
            return result.message, result.data

    message, data = run(main(), write=_list_command(settings, member_id))
    click.echo(message)
    click.echo(json_text(data))


def _confirmation(member_id: str, amount: str) -> str:
    digits = amount.lstrip("+-")
    if Decimal(amount) < 0:
        return f"Remove {digits} credit from member {member_id}?"
    return f"Add {digits} credit to member {member_id}?"
