"""Opt-in log output: ``INVETERATE_LOG=debug`` (or ``info``) prints the SDK's log to stderr.

A library leaves logging to the application; this switch is for a quick look without
writing logging code. The SDK logs one ``inveterate_async`` DEBUG line per attempt
(method, path, outcome, attempt, time); the API key is never part of it.
"""

from __future__ import annotations

import logging
import os
import sys
import time

LOGGER_NAME = "inveterate_async"
ENV_VAR = "INVETERATE_LOG"

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO}


class _StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is when a record is emitted (it may be replaced)."""

    def __init__(self, level: int) -> None:
        super().__init__(level)
        formatter = logging.Formatter(
            "%(asctime)s.%(msecs)03dZ %(name)s %(levelname)s: %(message)s",
            datefmt="%Y-%m-%dT%H:%M:%S",
        )
        formatter.converter = time.gmtime
        self.setFormatter(formatter)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:
            self.handleError(record)


def enable_stderr_logging(level: int = logging.DEBUG) -> logging.Handler:
    """Print the SDK's log records at ``level`` and above to stderr.

    :param level: a :mod:`logging` level.
    :returns: the handler added to the ``inveterate_async`` logger; pass it to
        :func:`disable_stderr_logging` to undo.
    """
    logger = logging.getLogger(LOGGER_NAME)
    handler = _StderrHandler(level)
    logger.addHandler(handler)
    logger.setLevel(level)
    return handler


def disable_stderr_logging(handler: logging.Handler) -> None:
    """Undo :func:`enable_stderr_logging`: remove ``handler`` and reset the level."""
    logger = logging.getLogger(LOGGER_NAME)
    logger.removeHandler(handler)
    logger.setLevel(logging.NOTSET)


def configure_from_environment() -> None:
    """Apply ``INVETERATE_LOG`` (``debug`` or ``info``, any case); anything else does nothing."""
    level = _LEVELS.get(os.environ.get(ENV_VAR, "").strip().lower())
    if level is not None:
        enable_stderr_logging(level)
