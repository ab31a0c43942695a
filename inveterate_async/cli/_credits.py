"""The ``credits`` commands: ``list`` and ``add`` (``export`` is in its own module)."""

from __future__ import annotations

import re
import sys
from typing import Any

import click

from .. import CreditResult
from ._amounts import parse_amount
from ._core import LedgerState, Settings, connect, require_key, write_ledger
from ._exits import CliError, Interrupted, UsageFailure, run
from ._export import export_command
from ._hints import command_line, list_words
from ._output import CREDIT_COLUMNS, FORMATS, credit_row, json_text, make_writer, plural
from ._progress import ledger_progress
from ._terminal import is_terminal

pass_settings = click.make_pass_decorator(Settings)

_CAMEL_HUMP = re.compile(r"(?<=[a-z0-9])([A-Z])")


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
@click.option(
    "--amounts-as-strings",
    is_flag=True,
    help="JSON Lines: write amount and new_balance as strings (for readers whose JSON "
    "parser turns big numbers into floats).",
)
@pass_settings
def list_credits(
    settings: Settings,
    member_id: str,
    page_size: int | None,
    cursor: str | None,
    max_items: int | None,
    fmt: str | None,
    amounts_as_strings: bool,
) -> None:
    """Stream MEMBER_ID's credit ledger, oldest first."""
    require_key(settings)
    stdout_tty = is_terminal(sys.stdout)
    fmt = fmt or ("table" if stdout_tty else "jsonl")
    if amounts_as_strings and fmt != "jsonl":
        raise UsageFailure("--amounts-as-strings is for JSON Lines output (--format jsonl)")
    writer = make_writer(fmt, None, CREDIT_COLUMNS, amounts_as_strings=amounts_as_strings)
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
        if not (type(exc) is CliError or isinstance(exc, Interrupted)) or state.printed == 0:
            raise
        raise type(exc)(f"{exc.message}\n{_resume_hint(settings, member_id, state)}") from None
    if state.printed == 0 and cursor is None:
        # An empty ledger (or an unknown member: the API answers both the same) would
        # otherwise print nothing at all.
        click.echo(f"no credits for member {member_id}", err=True)
    if state.more is not None:
        click.echo(
            f"stopped after {plural(state.printed, 'credit')} (--max-items); more with: "
            + command_line(settings, list_words(member_id, state.more)),
            err=True,
        )


def _resume_hint(settings: Settings, member_id: str, state: LedgerState) -> str:
    if state.resume is None:  # stopped while printing the first page
        return "no page was printed completely: to resume, run the same command again"
    return (
        f"{plural(state.printed, 'credit')} printed; to resume after them (same options): "
        + command_line(settings, list_words(member_id, state.resume))
    )


credits_group.add_command(export_command)


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
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    help="How to show the new entry [default: table on a terminal, else jsonl].",
)
@pass_settings
def add_credit(
    settings: Settings,
    member_id: str,
    amount: str,
    note: str | None,
    force: bool,
    yes: bool,
    fmt: str | None,
) -> None:
    """Add AMOUNT of store credit to MEMBER_ID (a negative AMOUNT removes credit).

    AMOUNT is a plain decimal, sent with its exact digits: 10.00 or -2.50 (no exponent,
    no +, no trailing dot).
    """
    require_key(settings)
    try:
        value = parse_amount(amount)
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

    async def main() -> CreditResult:
        async with connect(settings) as client:
            return await client.create_credit(
                member_id, value, note=note, force=True if force else None
            )

    result = run(main(), write=command_line(settings, list_words(member_id)))
    if result.message:
        click.echo(result.message, err=True)
    if result.credit is None:
        click.echo(json_text(_sdk_names(result.data)))
        return
    writer = make_writer(
        fmt or ("table" if is_terminal(sys.stdout) else "jsonl"), None, CREDIT_COLUMNS
    )
    writer.write_row(credit_row(result.credit))
    writer.close()


def _sdk_names(data: Any) -> Any:
    """The API's camelCase keys in the SDK's snake_case (``newBalance``: ``new_balance``)."""
    if not isinstance(data, dict):
        return data
    return {_CAMEL_HUMP.sub(r"_\1", str(key)).lower(): value for key, value in data.items()}


def _confirmation(member_id: str, amount: str) -> str:
    digits = amount.lstrip("-")
    if amount.startswith("-"):
        return f"Remove {digits} credit from member {member_id}?"
    return f"Add {digits} credit to member {member_id}?"
