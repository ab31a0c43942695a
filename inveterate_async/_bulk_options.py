"""The options of ``apply_credits``, checked before anything happens, and the batch."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime, timezone

import attrs

from ._adjustments import AdjustmentRow, CreditAdjustment
from ._request import check_positive_int

OnProgress = Callable[[AdjustmentRow], object]
Sleep = Callable[[float], Awaitable[object]]

_MAX_POLL_INTERVAL = 10.0


def _seconds(name: str, value: object, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number of seconds, got {value!r}")
    if not (value > 0 if positive else value >= 0):
        raise ValueError(f"{name} must be {'> 0' if positive else '>= 0'}, got {value!r}")
    return float(value)


@attrs.frozen
class BulkOptions:
    """The checked options of one ``apply_credits`` call (see its docstring)."""

    concurrency: int
    tag_notes: bool
    settle: float
    clock_skew: float
    poll_interval: float
    resend_unconfirmed: bool
    on_progress: OnProgress | None
    clock: Callable[[], float]
    sleep: Sleep

    def now(self) -> datetime:
        """The clock's time, as an aware UTC datetime."""
        return datetime.fromtimestamp(self.clock(), timezone.utc)

    @classmethod
    def checked(
        cls,
        *,
        concurrency: int,
        tag_notes: bool,
        settle: float,
        clock_skew: float,
        poll_interval: float | None,
        resend_unconfirmed: bool,
        on_progress: OnProgress | None,
        clock: Callable[[], float],
        sleep: Sleep,
    ) -> BulkOptions:
        """The options, or ValueError for the first bad one."""
        check_positive_int("concurrency", concurrency)
        settle = _seconds("settle", settle)
        if poll_interval is None:
            poll_interval = min(_MAX_POLL_INTERVAL, max(settle / 10, 0.1))
        return cls(
            concurrency=concurrency,
            tag_notes=bool(tag_notes),
            settle=settle,
            clock_skew=_seconds("clock_skew", clock_skew),
            poll_interval=_seconds("poll_interval", poll_interval, positive=True),
            resend_unconfirmed=bool(resend_unconfirmed),
            on_progress=on_progress,
            clock=clock,
            sleep=sleep,
        )


def check_batch(adjustments: Iterable[CreditAdjustment]) -> list[CreditAdjustment]:
    """The batch as a list; ValueError for a non-adjustment or a ref given twice."""
    if isinstance(adjustments, (str, bytes, CreditAdjustment)):
        raise ValueError("adjustments must be an iterable of CreditAdjustment")
    batch = list(adjustments)
    refs: set[str] = set()
    for adjustment in batch:
        if not isinstance(adjustment, CreditAdjustment):
            raise ValueError(f"not a CreditAdjustment: {type(adjustment).__name__}")
        if adjustment.ref in refs:
            raise ValueError(f"ref {adjustment.ref!r} is given twice")
        refs.add(adjustment.ref)
    return batch
