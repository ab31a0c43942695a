"""Retry decisions and delays."""

import random
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest

from inveterate_async._http.retry import (
    RetryPolicy,
    may_retry_failure,
    may_retry_status,
    parse_retry_after,
)


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_reads_retry_transient_statuses(status: int) -> None:
    assert may_retry_status(True, status)


@pytest.mark.parametrize("status", [200, 301, 400, 401, 404, 501])
def test_reads_do_not_retry_other_statuses(status: int) -> None:
    assert not may_retry_status(True, status)


def test_writes_retry_only_429() -> None:
    assert may_retry_status(False, 429)
    assert not any(may_retry_status(False, s) for s in (500, 502, 503, 504))


def test_writes_retry_failures_only_before_sending() -> None:
    assert may_retry_failure(False, sent=False, timed_out=False)
    assert not may_retry_failure(False, sent=True, timed_out=False)
    assert not may_retry_failure(False, sent=False, timed_out=True)
    assert may_retry_failure(True, sent=True, timed_out=True)


def test_backoff_is_full_jitter_capped() -> None:
    policy = RetryPolicy()
    rng = random.Random(7)
    for retry in range(1, 12):
        ceiling = min(8.0, 0.5 * 2 ** (retry - 1))
        draws = [policy.backoff(retry, rng) for _ in range(200)]
        assert all(0.0 <= d <= ceiling for d in draws)
        assert max(draws) > ceiling * 0.8  # spread over the whole range, not a constant
    assert RetryPolicy(backoff_base=0.0).backoff(3) == 0.0


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("0", 0.0), ("2", 2.0), ("1.5", 1.5), ("-3", 0.0), ("soon", None), ("nan", None)],
)
def test_retry_after_seconds(value: str, seconds: float | None) -> None:
    assert parse_retry_after({"Retry-After": value}) == seconds


def test_retry_after_http_date() -> None:
    when = datetime.now(timezone.utc) + timedelta(seconds=30)
    seconds = parse_retry_after({"Retry-After": format_datetime(when, usegmt=True)})
    assert seconds is not None
    assert 25 <= seconds <= 30
    past = format_datetime(datetime(2000, 1, 1, tzinfo=timezone.utc), usegmt=True)
    assert parse_retry_after({"Retry-After": past}) == 0.0
    assert parse_retry_after({}) is None


def test_retry_after_replaces_backoff_and_is_capped() -> None:
    policy = RetryPolicy()
    assert policy.delay(1, {"Retry-After": "0"}) == 0.0
    assert policy.delay(1, {"Retry-After": "600"}) == 60.0
    assert 0.0 <= policy.delay(2, {}) <= 1.0
