"""Exit codes, and the one runner that turns a command's errors into messages and codes.

Exit codes: 0 ok, 1 API error, 2 usage error, 3 write outcome unknown, 130 interrupted
(Ctrl-C), 143 terminated (SIGTERM).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import IO, Any, TypeVar

import click

from .._errors import UNKNOWN_OUTCOME_HINT, BadRequestError, InveterateError

T = TypeVar("T")

EXIT_API_ERROR = 1
EXIT_USAGE = 2
EXIT_OUTCOME_UNKNOWN = 3
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


class CliError(click.ClickException):
    """An error shown as an ``Error: ...`` message on stderr; exits with :attr:`exit_code`."""

    exit_code = EXIT_API_ERROR


class UsageFailure(CliError):
    """A bad argument, option or environment: nothing was sent."""

    exit_code = EXIT_USAGE


class OutcomeUnknown(CliError):
    """A write that may or may not have been applied."""

    exit_code = EXIT_OUTCOME_UNKNOWN


class Interrupted(CliError):
    """Ctrl-C: shown without the ``Error:`` prefix.

    :param message: what was done before the interruption, starting with ``interrupted``.
    """

    exit_code = EXIT_INTERRUPTED

    def __init__(self, message: str = "interrupted") -> None:
        super().__init__(message)

    def show(self, file: IO[Any] | None = None) -> None:
        """Print the message on stderr.

        :param file: ignored (click's signature): the message always goes to stderr.
        """
        click.echo(self.format_message(), err=True)


class Terminated(Interrupted):
    """SIGTERM, handled like Ctrl-C but with its own exit code (128 + 15)."""

    exit_code = EXIT_TERMINATED


def describe(error: BaseException) -> str:
    """How an error is shown to the user (never as a traceback).

    :param error: the exception.
    :returns: its class name and message, e.g. ``ServerError: HTTP 500 from ...``.
    """
    return f"{type(error).__name__}: {error}"


def run(coro: Coroutine[Any, Any, T], *, write: str | None = None) -> T:
    """Run a command's async part, turning every error into a message and an exit code.

    :param coro: the command's coroutine, run with :func:`asyncio.run`.
    :param write: for a write, the command that shows whether it was applied (e.g.
        ``inveterate credits list 42``); None for anything else.
    :returns: what ``coro`` returns.
    :raises Interrupted: on Ctrl-C (exit 130); for a write, saying it may have been applied.
    :raises OutcomeUnknown: when the SDK says a write may have been applied (exit 3), after
        a warning on stderr.
    :raises CliError: on any other :class:`~inveterate_async.InveterateError` (exit 1).
    :raises UsageFailure: on a :class:`ValueError`: a bad argument (exit 2).
    """
    try:
        return asyncio.run(coro)
    except (KeyboardInterrupt, asyncio.CancelledError):
        if write is None:
            raise Interrupted() from None
        raise Interrupted(f"interrupted: {_unknown_outcome(write)}") from None
    except InveterateError as exc:
        # Read with getattr: more error classes may come to carry ``outcome_unknown``.
        if getattr(exc, "outcome_unknown", False):
            click.secho(f"Warning: {_unknown_outcome(write)}", err=True, fg="yellow")
            raise OutcomeUnknown(describe(exc)) from None
        if write is not None and isinstance(exc, BadRequestError):
            raise CliError(f"{describe(exc)} (nothing was applied)") from None
        raise CliError(describe(exc)) from None
    except ValueError as exc:
        raise UsageFailure(str(exc)) from None


def _unknown_outcome(check: str | None) -> str:
    return UNKNOWN_OUTCOME_HINT if check is None else f"{UNKNOWN_OUTCOME_HINT} ({check})"
