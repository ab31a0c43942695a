"""Telling failures that no other member can avoid, to stop a fan-out early.

A wrong key, a refused key or an unreachable host fails every member the same way:
reading the rest would only send requests that are bound to fail.
"""

from __future__ import annotations

import aiohttp

from .._errors import APIConnectionError, APIStatusError

DEFAULT_ABORT_AFTER = 5


def shared_cause(error: Exception) -> str | None:
    """Why every member would fail as this one did, or None if it may be this member's own.

    :returns: ``"the API key was refused"``, ``"the API cannot be reached"`` or None.
    """
    if isinstance(error, APIStatusError) and error.is_auth_error:
        return "the API key was refused"
    if isinstance(error, APIConnectionError) and isinstance(
        error.__cause__, (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)
    ):
        return "the API cannot be reached"
    return None


class FailureStreak:
    """Counts consecutive member failures with the same shared cause."""

    __slots__ = ("_cause", "_count", "limit", "tripped")

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        #: Whether ``limit`` was reached: the stream is stopping.
        self.tripped = False
        self._cause: str | None = None
        self._count = 0

    def record(self, error: Exception | None) -> str | None:
        """Record a finished member (``error`` None: success).

        :returns: the shared cause once ``limit`` members in a row failed with it.
        """
        cause = None if error is None else shared_cause(error)
        if cause is None or cause != self._cause:
            self._count = 0
        self._cause = cause
        if cause is not None:
            self._count += 1
            if self.limit is not None and self._count >= self.limit and not self.tripped:
                self.tripped = True
                return cause
        return None
