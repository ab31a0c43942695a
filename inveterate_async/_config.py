"""Checking the client's settings: every invalid one is a ValueError before anything is sent."""

from __future__ import annotations

import enum
import os

import aiohttp


class _Unset(enum.Enum):
    UNSET = enum.auto()


#: "Not given": keeps the client's setting (None already means "no deadline").
UNSET = _Unset.UNSET
Unset = _Unset

_TRUE = frozenset({"1", "true", "yes", "on"})


def env_flag(name: str) -> bool:
    """Whether an environment switch is on (``1``, ``true``, ``yes`` or ``on``)."""
    return os.environ.get(name, "").strip().lower() in _TRUE


def is_number(value: object) -> bool:
    """Whether ``value`` is an int or float (not a bool)."""
    return not isinstance(value, bool) and isinstance(value, (int, float))


def check_max_retries(max_retries: object) -> None:
    """:raises ValueError: unless ``max_retries`` is an int >= 0."""
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
        raise ValueError(f"max_retries must be an int >= 0, got {max_retries!r}")


def check_deadline(deadline: object) -> float | None:
    """A call's time budget in seconds, or None for none.

    :raises ValueError: unless a positive number or None.
    """
    if deadline is None:
        return None
    if not is_number(deadline) or not deadline > 0:  # type: ignore[operator]
        raise ValueError(f"deadline must be a positive number of seconds or None, got {deadline!r}")
    return float(deadline)  # type: ignore[arg-type]


def client_timeout(timeout: float | aiohttp.ClientTimeout) -> aiohttp.ClientTimeout:
    """One attempt's timeout: seconds, or an ``aiohttp.ClientTimeout`` as it is.

    :raises ValueError: unless a positive number or a ``ClientTimeout``.
    """
    if isinstance(timeout, aiohttp.ClientTimeout):
        return timeout
    if not is_number(timeout) or not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    return aiohttp.ClientTimeout(total=float(timeout))
