"""The errors of an export's files: its output and its state file (nothing about the API).

Each carries ``problem``, a short code a program can test, and ``path``; ``str()`` is a
sentence saying what to do.
"""

from __future__ import annotations

import errno
from typing import Literal

from .._errors import InveterateError

OutputProblem = Literal[
    "exists", "no_directory", "cannot_create", "in_use", "closed_pipe", "write_failed"
]
StateProblem = Literal[
    "cannot_open",
    "not_a_state_file",
    "in_use",
    "other_export",
    "partial_missing",
    "partial_shorter",
    "ids_changed",
    "write_failed",
    "cursor_holds_key",
]


class ExportError(InveterateError):
    """An export cannot start or go on because of its files.

    :param message: what went wrong and what to do.
    :param path: the file concerned.
    :param problem: which problem it is (see the subclasses).
    """

    _repr_fields: tuple[str, ...] = ("message", "path", "problem")

    def __init__(self, message: str, *, path: str, problem: str) -> None:
        super().__init__(message)
        self.path = path
        self.problem = problem


class ExportOutputError(ExportError):
    """The output cannot be written.

    ``problem``: ``"exists"`` (a file is there and ``overwrite`` is not set; nothing was
    sent), ``"no_directory"``, ``"cannot_create"`` (no permission...), ``"in_use"``
    (another export is writing it), ``"closed_pipe"`` (the reader of a stream went away)
    or ``"write_failed"`` (a full disk...; the ``OSError`` is ``__cause__``).
    """

    def __init__(self, message: str, *, path: str, problem: OutputProblem) -> None:
        super().__init__(message, path=path, problem=problem)


class ExportStateError(ExportError):
    """The state file cannot be used to resume this export.

    ``problem``: ``"not_a_state_file"``, ``"in_use"`` (another export has it),
    ``"other_export"`` (saved for another output, format or API), ``"partial_missing"``
    or ``"partial_shorter"`` (the partial output was removed or changed),
    ``"ids_changed"`` (the ids are not those of the saved export), ``"cannot_open"`` or
    ``"write_failed"``. Deleting the state file starts the export over.
    """

    def __init__(self, message: str, *, path: str, problem: StateProblem) -> None:
        super().__init__(message, path=path, problem=problem)


def write_error(target: str, error: OSError) -> ExportOutputError:
    """The error for a failed write of ``target`` (the output as the caller named it)."""
    if error.errno == errno.EPIPE:
        message = f"cannot write {target}: the reader closed the pipe"
        return ExportOutputError(message, path=target, problem="closed_pipe")
    reason = error.strerror or str(error)
    return ExportOutputError(
        f"cannot write {target}: {reason}", path=target, problem="write_failed"
    )


def ids_changed(state_path: str, reason: str) -> ExportStateError:
    """The error for a resume given other ids than the export saved in ``state_path``."""
    message = (
        f"cannot resume the export saved in {state_path}: {reason}: give the same ids in the "
        "same order, or delete that file to start over"
    )
    return ExportStateError(message, path=state_path, problem="ids_changed")


def failed_write(error: BaseException) -> bool:
    """Whether ``error`` says the output or the state file could not be written."""
    return isinstance(error, ExportError) and error.problem in ("write_failed", "closed_pipe")
