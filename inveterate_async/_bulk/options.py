"""The options of ``apply_credits``, checked before anything happens."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import attrs

from .._http.request import check_positive_int
from .adjustments import AdjustmentRow

OnProgress = Callable[[AdjustmentRow], object]
Sleep = Callable[[float], Awaitable[object]]

_MAX_POLL_INTERVAL = 10.0


def _seconds(name: str, value: object, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number of seconds, got {value!r}")
    if not (value > 0 if positive else value >= 0) or value != value or value == float("inf"):
        raise ValueError(f"{name} must be {'> 0' if positive else '>= 0'}, got {value!r}")
    return float(value)


@attrs.frozen
class BulkOptions:
    """The checked options of one ``apply_credits`` call (see its docstring).

    ``clock`` is monotonic: it times settle windows and poll intervals within a run.
    """

    concurrency: int
    tag_notes: bool
    check_ledger_first: bool
    settle: float
    clock_skew: float
    poll_interval: float
    resend_unconfirmed: bool
    max_decimal_places: int | None
    on_progress: OnProgress | None
    clock: Callable[[], float]
    sleep: Sleep

    @classmethod
    def checked(
        cls,
        *,
        concurrency: int,
        tag_notes: bool,
        check_ledger_first: bool | None,
        settle: float,
        clock_skew: float,
        poll_interval: float | None,
        resend_unconfirmed: bool,
        max_decimal_places: int | None,
        on_progress: OnProgress | None,
        clock: Callable[[], float],
        sleep: Sleep,
    ) -> BulkOptions:
        """The options, or ValueError for the first bad one."""
        check_positive_int("concurrency", concurrency)
        if check_ledger_first is None:
            check_ledger_first = bool(tag_notes)
        elif check_ledger_first and not tag_notes:
            raise ValueError(
                "check_ledger_first=True needs tag_notes=True: an untagged note does not say "
                "which adjustment made it"
            )
        if max_decimal_places is not None and (
            isinstance(max_decimal_places, bool)
            or not isinstance(max_decimal_places, int)
            or max_decimal_places < 0
        ):
            raise ValueError(
                f"max_decimal_places must be an int >= 0 or None, got {max_decimal_places!r}"
            )
        settle = _seconds("settle", settle)
        if poll_interval is None:
            poll_interval = min(_MAX_POLL_INTERVAL, max(settle / 10, 0.1))
        return cls(
            concurrency=concurrency,
            tag_notes=bool(tag_notes),
            check_ledger_first=bool(check_ledger_first),
            settle=settle,
            clock_skew=_seconds("clock_skew", clock_skew),
            poll_interval=_seconds("poll_interval", poll_interval, positive=True),
            resend_unconfirmed=bool(resend_unconfirmed),
            max_decimal_places=max_decimal_places,
            on_progress=on_progress,
            clock=clock,
            sleep=sleep,
        )
