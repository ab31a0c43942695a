"""The ``inveterate`` command: the click group, its global options, and ``main``.

Every click callback is synchronous and runs its async part with :func:`asyncio.run`.
Data goes to stdout; progress, warnings and errors go to stderr.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import click
from click.core import ParameterSource

from .. import __version__
from .._logging import disable_stderr_logging, enable_stderr_logging
from ._apply import apply_command, journal_command
from ._cluster import cluster_group
from ._core import DEFAULT_MAX_RETRIES, DEFAULT_SANDBOX_MEMBERS, DEFAULT_TIMEOUT, Settings
from ._credits import credits_group
from ._demo import demo_command
from ._serve import sandbox_command


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
    default=DEFAULT_SANDBOX_MEMBERS,
    show_default=True,
    metavar="N",
    help="With --sandbox: how many members (ids 1..N) to seed.",
)
@click.option(
    "--max-retries",
    type=click.IntRange(min=0),
    default=DEFAULT_MAX_RETRIES,
    show_default=True,
    metavar="N",
    help="Extra attempts for a read after a transient failure (writes are never retried "
    "once they may have been applied).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_TIMEOUT,
    show_default=True,
    metavar="SECONDS",
    help="Time allowed for one attempt of a request.",
)
@click.option(
    "-v",
    "--verbose",
    is_flag=True,
    help="Log every request attempt to stderr (method, path, status, time; never the key).",
)
@click.pass_context
def app(
    ctx: click.Context,
    api_key: str | None,
    base_url: str | None,
    sandbox: bool,
    sandbox_members: int,
    max_retries: int,
    timeout: float,
    verbose: bool,
) -> None:
    """Inveterate store credits from the command line.

    Try it without an account: `inveterate demo`, or add --sandbox to any
    `credits` command.

    Exit codes: 0 ok, 1 API error, 2 usage error, 3 write of unknown outcome,
    130 interrupted (Ctrl-C), 143 terminated (SIGTERM).
    """
    if verbose:
        handler = enable_stderr_logging(logging.DEBUG)
        ctx.call_on_close(lambda: disable_stderr_logging(handler))
    ctx.obj = Settings(
        api_key=api_key or None,
        base_url=base_url or None,
        sandbox=sandbox,
        sandbox_members=sandbox_members,
        max_retries=max_retries,
        timeout=timeout,
        key_in_arguments=ctx.get_parameter_source("api_key") == ParameterSource.COMMANDLINE,
        base_url_in_arguments=ctx.get_parameter_source("base_url") == ParameterSource.COMMANDLINE,
    )


credits_group.add_command(apply_command)
credits_group.add_command(journal_command)
app.add_command(credits_group)
app.add_command(cluster_group)
app.add_command(sandbox_command)
app.add_command(demo_command)


def main(argv: Sequence[str] | None = None) -> None:
    """The ``inveterate`` console script (click handles a closed pipe, e.g. ``| head``).

    :param argv: the arguments after the program name; None reads ``sys.argv``.
    """
    app.main(args=argv, prog_name="inveterate")
