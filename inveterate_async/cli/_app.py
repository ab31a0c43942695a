"""The ``inveterate`` command: click wiring, exit codes and messages.

Every click callback is synchronous and runs its async part with :func:`asyncio.run`.
Data goes to stdout; progress, warnings and errors go to stderr.

Exit codes: 0 ok, 1 API error, 2 usage error, 3 write outcome unknown, 130 interrupted.
"""

from __future__ import annotations

import asyncio
import shlex
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from contextlib import ExitStack, suppress
from decimal import Decimal
from typing import IO, Any, TextIO, TypeVar

import click

from .. import MemberFailure
from .._errors import (
    UNKNOWN_OUTCOME_HINT,
    APIConnectionError,
    BadRequestError,
    InveterateError,
    ServerError,
)
from .._request import amount_json, is_loopback
from .._version import __version__
from ..testing import Sandbox
from ._core import (
    NO_KEY_MESSAGE,
    SANDBOX_API_KEY,
    ExportResult,
    LedgerState,
    Settings,
    connect,
    count_member_ids,
    export_ledgers,
    read_member_ids,
    start_sandbox,
    write_ledger,
)
from ._output import CREDIT_COLUMNS, EXPORT_COLUMNS, FORMATS, json_text, make_writer
from ._progress import export_progress, ledger_progress

T = TypeVar("T")

EXIT_OK = 0
EXIT_API_ERROR = 1
EXIT_USAGE = 2
EXIT_OUTCOME_UNKNOWN = 3
EXIT_INTERRUPTED = 130

UNKNOWN_OUTCOME_WARNING = UNKNOWN_OUTCOME_HINT


class CliError(click.ClickException):
    """An error shown as an ``Error: ...`` message on stderr; exits with :attr:`exit_code`."""

    exit_code = EXIT_API_ERROR


class UsageFailure(CliError):
    exit_code = EXIT_USAGE


class OutcomeUnknown(CliError):
    exit_code = EXIT_OUTCOME_UNKNOWN


class Interrupted(CliError):
    """Ctrl-C: shown without the ``Error:`` prefix."""

    exit_code = EXIT_INTERRUPTED

    def __init__(self, message: str = "interrupted") -> None:
        super().__init__(message)

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(self.format_message(), err=True)


def describe(error: BaseException) -> str:
    """How an error is shown: its class name and message (never a traceback)."""
    return f"{type(error).__name__}: {error}"


def _is_terminal(stream: object) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if callable(isatty) else False
    except (OSError, ValueError):
        return False


def _stdin_is_terminal() -> bool:
    return _is_terminal(sys.stdin)


def _stdout_is_terminal() -> bool:
    return _is_terminal(sys.stdout)


def _stderr_is_terminal() -> bool:
    return _is_terminal(sys.stderr)


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a command's async part, turning errors into messages and exit codes."""
    try:
        return asyncio.run(coro)
    except (KeyboardInterrupt, asyncio.CancelledError):
        raise Interrupted() from None
    except InveterateError as exc:
        raise CliError(describe(exc)) from None
    except ValueError as exc:
        raise UsageFailure(str(exc)) from None


def _require_key(settings: Settings) -> None:
    if not settings.sandbox and not settings.api_key:
        raise UsageFailure(NO_KEY_MESSAGE)


def _command_prefix(settings: Settings) -> str:
    return "inveterate --sandbox" if settings.sandbox else "inveterate"


def _resume_command(settings: Settings, member_id: str, cursor: str) -> str:
    return (
        f"{_command_prefix(settings)} credits list {shlex.quote(member_id)} "
        f"--cursor {shlex.quote(cursor)}"
    )


pass_settings = click.make_pass_decorator(Settings)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="inveterate")
@click.option(
    "--api-key",
    envvar="INVETERATE_API_KEY",
    show_envvar=True,
    metavar="KEY",
    help="Your private Inveterate API key (never printed).",
)
@click.option(
    "--base-url",
    envvar="INVETERATE_BASE_URL",
    show_envvar=True,
    metavar="URL",
    help="API root (default: the production API). https, except for loopback hosts.",
)
@click.option(
    "--sandbox",
    is_flag=True,
    help="Run against an embedded, seeded sandbox on 127.0.0.1 instead of the real API.",
)
@click.option(
    "--sandbox-members",
    type=click.IntRange(min=0),
    default=100,
    show_default=True,
    metavar="N",
    help="With --sandbox: how many members (ids 1..N) to seed.",
)
@click.option(
    "--max-retries",
    type=click.IntRange(min=0),
    default=2,
    show_default=True,
    metavar="N",
    help="Extra attempts for a read after a transient failure (writes are never retried "
    "once they may have been applied).",
)
@click.pass_context
def app(
    ctx: click.Context,
    api_key: str | None,
    base_url: str | None,
    sandbox: bool,
    sandbox_members: int,
    max_retries: int,
) -> None:
    """Inveterate store credits from the command line.

    Try it without an account: `inveterate demo`, or add --sandbox to any
    `credits` command.

    Exit codes: 0 ok, 1 API error, 2 usage error, 3 write of unknown outcome,
    130 interrupted.
    """
    ctx.obj = Settings(
        api_key=api_key or None,
        base_url=base_url or None,
        sandbox=sandbox,
        sandbox_members=sandbox_members,
        max_retries=max_retries,
    )


@app.group("credits")
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
    stdout_tty = _stdout_is_terminal()
    writer = make_writer(fmt or ("table" if stdout_tty else "jsonl"), None, CREDIT_COLUMNS)
    state = LedgerState(resume=cursor or None)

    async def main() -> None:
        async with connect(settings) as client:
            with ledger_progress(_stderr_is_terminal(), redirect_stdout=stdout_tty) as tracker:
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
        _run(main())
        writer.close()
    except CliError as exc:
        if type(exc) not in (CliError, Interrupted) or state.printed == 0:
            raise
        raise type(exc)(f"{exc.message}\n{_resume_hint(settings, member_id, state)}") from None
    if state.more is not None:
        click.echo(
            f"stopped after {state.printed} credits (--max-items); more with: "
            + _resume_command(settings, member_id, state.more),
            err=True,
        )


def _resume_hint(settings: Settings, member_id: str, state: LedgerState) -> str:
    if state.resume is None:  # stopped while printing the first page
        return "no page was printed completely: to resume, run the same command again"
    return (
        f"{state.printed} credits printed; to resume after them (same options): "
        + _resume_command(settings, member_id, state.resume)
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
    progress = _stderr_is_terminal()
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
            seconds = _run(main())
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
                + _resume_command(settings, member_id, failure.cursor)
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
        if not _stdin_is_terminal():
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

    try:
        message, data = asyncio.run(main())
    except (KeyboardInterrupt, asyncio.CancelledError):
        raise Interrupted(
            f"interrupted: {UNKNOWN_OUTCOME_WARNING} "
            f"({_command_prefix(settings)} credits list {shlex.quote(member_id)})"
        ) from None
    except (ServerError, APIConnectionError) as exc:
        if not exc.outcome_unknown:
            raise CliError(describe(exc)) from None
        click.secho(
            f"Warning: {UNKNOWN_OUTCOME_WARNING} "
            f"({_command_prefix(settings)} credits list {shlex.quote(member_id)})",
            err=True,
            fg="yellow",
        )
        raise OutcomeUnknown(describe(exc)) from None
    except BadRequestError as exc:
        raise CliError(f"{describe(exc)} (nothing was applied)") from None
    except InveterateError as exc:
        raise CliError(describe(exc)) from None
    except ValueError as exc:
        raise UsageFailure(str(exc)) from None
    click.echo(message)
    click.echo(json_text(data))


def _confirmation(member_id: str, amount: str) -> str:
    digits = amount.lstrip("+-")
    if Decimal(amount) < 0:
        return f"Remove {digits} credit from member {member_id}?"
    return f"Add {digits} credit to member {member_id}?"


async def serve_sandbox(
    *,
    stop: asyncio.Event,
    host: str = "127.0.0.1",
    port: int = 8080,
    members: int = 100,
    seed: int = 0,
    api_key: str = SANDBOX_API_KEY,
    ready: Callable[[Sandbox], object] | None = None,
) -> None:
    """Serve a seeded sandbox until ``stop`` is set; ``ready(sandbox)`` is called once up."""
    sandbox = await start_sandbox(members=members, seed=seed, api_key=api_key, host=host, port=port)
    try:
        if ready is not None:
            ready(sandbox)
        await stop.wait()
    finally:
        await sandbox.close()


def _announce(sandbox: Sandbox, members: int) -> None:
    url = sandbox.base_url
    key = sandbox.api_key
    curl = (
        f"curl -s -H {shlex.quote('X-Inveterate-Api-Key: ' + key)} "
        f"{shlex.quote(url + '/admin/members/1/credits?limit=3')}"
    )
    click.echo(f"Inveterate sandbox: {members} members (ids 1..{members}); Ctrl-C to stop")
    click.echo(f"  base URL: {url}")
    click.echo(f"  API key:  {key}")
    click.echo(f"  try:      {curl}")
    click.echo(
        f"  or:       INVETERATE_BASE_URL={shlex.quote(url)} "
        f"INVETERATE_API_KEY={shlex.quote(key)} inveterate credits list 1"
    )
    sys.stdout.flush()


@app.command("sandbox")
@click.option(
    "--host", default="127.0.0.1", show_default=True, metavar="HOST", help="Interface to bind."
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8080,
    show_default=True,
    metavar="PORT",
    help="TCP port (0: any free port).",
)
@click.option(
    "--members",
    type=click.IntRange(min=0),
    default=100,
    show_default=True,
    metavar="N",
    help="Members to seed.",
)
@click.option(
    "--seed", type=int, default=0, show_default=True, metavar="S", help="Seed of the ledgers."
)
@click.option(
    "--api-key",
    default=SANDBOX_API_KEY,
    show_default=True,
    metavar="K",
    help="The key the sandbox accepts.",
)
def sandbox_command(host: str, port: int, members: int, seed: int, api_key: str) -> None:
    """Serve a seeded sandbox API in the foreground.

    For trying the API by hand or from any language; stop it with Ctrl-C.
    """
    if not is_loopback(host):
        click.secho(
            f"Warning: {host} is not a loopback address: other machines may reach this "
            "sandbox (test data only, and its key is printed below)",
            err=True,
            fg="yellow",
        )

    async def main() -> None:
        stop = asyncio.Event()
        with suppress(NotImplementedError, RuntimeError, ValueError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await serve_sandbox(
            stop=stop,
            host=host,
            port=port,
            members=members,
            seed=seed,
            api_key=api_key,
            ready=lambda sandbox: _announce(sandbox, members),
        )

    try:
        asyncio.run(main())
    except (KeyboardInterrupt, asyncio.CancelledError):
        pass
    except OSError as exc:
        raise CliError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None
    click.echo("sandbox stopped", err=True)


@app.command("demo")
def demo_command() -> None:
    """A guided tour on an embedded sandbox (no key, a few seconds)."""
    from ._demo import run_demo

    _run(run_demo())


def main(argv: Sequence[str] | None = None) -> None:
    """The ``inveterate`` console script (click handles a closed pipe, e.g. ``| head``)."""
    app.main(args=argv, prog_name="inveterate")
