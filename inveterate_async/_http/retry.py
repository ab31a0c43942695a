"""When to retry and how long to wait: pure decisions, no I/O."""

from __future__ import annotations

import random
from collections.abc import Mapping
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

import attrs

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})


@attrs.frozen(slots=True)
class RetryPolicy:
    """How many extra attempts to make and how to space them.

    The wait before retry ``n`` (from 1) is drawn uniformly from
    ``[0, min(backoff_cap, backoff_base * 2 ** (n - 1))]`` ("full jitter"), unless
    the server sent Retry-After, which is used instead (capped at ``retry_after_cap``).
    """

    max_retries: int = 2
    backoff_base: float = 0.5
    backoff_cap: float = 8.0
    retry_after_cap: float = 60.0

    def backoff(self, retry_number: int, rng: random.Random | None = None) -> float:
        """The jittered wait before retry ``retry_number`` (1 for the first retry)."""
        ceiling = min(self.backoff_cap, self.backoff_base * 2 ** (retry_number - 1))
        return (rng or random).uniform(0.0, ceiling)

    def delay(self, retry_number: int, headers: Mapping[str, str] | None = None) -> float:
        """The wait before a retry: Retry-After when given, else the backoff."""
        retry_after = parse_retry_after(headers) if headers is not None else None
        if retry_after is not None:
            return min(retry_after, self.retry_after_cap)
        return self.backoff(retry_number)


def may_retry_status(replayable: bool, status: int) -> bool:
    """Whether a response status may be retried: any retryable one for a read, 429 for writes.

    A write is never retried after a 5xx: the API says it may have been applied.
    """
    if replayable:
        return status in RETRYABLE_STATUSES
    return status == 429


def may_retry_failure(replayable: bool, *, sent: bool, timed_out: bool) -> bool:
    """Whether a network failure may be retried.

    Reads always; a write only when the request never left (so it cannot have
    been applied), and never after a timeout.
    """
    if replayable:
        return True
    return not sent and not timed_out


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or HTTP date), or None."""
    value = headers.get("Retry-After")
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - datetime.now(timezone.utc)).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)
