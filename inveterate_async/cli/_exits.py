"""Exit codes, and the one runner that turns a command's errors into messages and codes.

Exit codes: 0 ok, 1 API error, 2 usage error, 3 write outcome unknown, 4 the API refused
the key during a batch (rows left pending), 130 interrupted (Ctrl-C, SIGINT), 143
terminated (SIGTERM).
"""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import sys
from collections.abc import Coroutine
from contextlib import suppress
from typing import IO, Any, TypeVar

import click

from .._errors import UNKNOWN_OUTCOME_HINT, BadRequestError, InveterateError

T = TypeVar("T")

EXIT_API_ERROR = 1
EXIT_USAGE = 2
EXIT_OUTCOME_UNKNOWN = 3
EXIT_KEY_REFUSED = 4
EXIT_INTERRUPTED = 128 + signal.SIGINT
EXIT_TERMINATED = 128 + signal.SIGTERM


class CliError(click.ClickException):
    """An error shown as an ``Error: ...`` message on stderr; exits with :attr:`exit_code`."""

    exit_code = EXIT_API_ERROR


class UsageFailure(CliError):
    """A bad argument, option or environment: nothing was sent."""

    exit_code = EXIT_USAGE


class OutcomeUnknown(CliError):
    """A write that may or may not have been applied."""

    exit_code = EXIT_OUTCOME_UNKNOWN


class KeyRefused(CliError):
    """The API refused the key in the middle of a batch: what was not sent is pending."""

    exit_code = EXIT_KEY_REFUSED


class Interrupted(CliError):
    """Ctrl-C (SIGINT): shown without the ``Error:`` prefix; exits with 130.

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
    """SIGTERM: handled as Ctrl-C is, but exits with 143."""

    exit_code = EXIT_TERMINATED


def interrupted(message: str = "interrupted", signum: int = signal.SIGINT) -> Interrupted:
    """:class:`Terminated` for SIGTERM, else :class:`Interrupted`, with ``message``."""
    return Terminated(message) if signum == signal.SIGTERM else Interrupted(message)


class WriteFailed(CliError):
    """The output could not be written (a full disk, a closed pipe): one line, exit 1."""


def write_failed(target: str, error: OSError, stream: object = None) -> WriteFailed:
    """The one-line error for a failed write of ``target``.

    :param target: the output as the user named it (``stdout`` for ``-``).
    :param error: the :class:`OSError` of the write.
    :param stream: the stream that failed; when it is stdout and its reader is gone, the
        rest of the process's output to it is discarded (no second error at exit).
    :returns: the error to raise.
    """
    if error.errno == errno.EPIPE:
        if stream is sys.stdout or stream is getattr(sys.stdout, "buffer", None):
            _discard_stdout()
        return WriteFailed(f"cannot write {target}: the reader closed the pipe")
    reason = error.strerror or str(error)
    return WriteFailed(f"cannot write {target}: {reason}")


def _discard_stdout() -> None:
    with suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


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
    :raises Interrupted: on Ctrl-C or SIGINT (exit 130) and SIGTERM (exit 143), both of
        which cancel ``coro``; for a write, saying it may have been applied.
    :raises OutcomeUnknown: when the SDK says a write may have been applied (exit 3), after
        a warning on stderr.
    :raises CliError: on any other :class:`~inveterate_async.InveterateError` (exit 1).
    :raises UsageFailure: on a :class:`ValueError`: a bad argument (exit 2).
    """
    signals = SignalCatcher()
    try:
        return asyncio.run(signals.cancel_on_signal(coro))
    except (KeyboardInterrupt, asyncio.CancelledError):
        signum = signals.received or signal.SIGINT
        if write is None:
            raise interrupted(signum=signum) from None
        raise interrupted(f"interrupted: {_unknown_outcome(write)}", signum) from None
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


class SignalCatcher:
    """SIGINT and SIGTERM cancel the command's task, so that its cleanup runs either way.

    A second signal gets Python's default behaviour (KeyboardInterrupt, or termination).
    """

    def __init__(self) -> None:
        #: The first signal received, or None.
        self.received: int | None = None

    async def cancel_on_signal(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await ``coro`` with the signal handlers installed (where the platform allows)."""
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        installed: list[int] = []

        def on_signal(signum: int) -> None:
            if self.received is None:
                self.received = signum
            _remove_handlers(loop, installed)
            if task is not None:
                task.cancel()

        for signum in (signal.SIGINT, signal.SIGTERM):
            # Not in the main thread, or not on this platform: the default behaviour stays.
            with suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signum, on_signal, signum)
                installed.append(signum)
        try:
            return await coro
        finally:
            _remove_handlers(loop, installed)


def _remove_handlers(loop: asyncio.AbstractEventLoop, installed: list[int]) -> None:
    for signum in installed:
        loop.remove_signal_handler(signum)
    installed.clear()
