"""A journal row as a run's passes read it."""

from __future__ import annotations

import attrs

from .adjustments import AdjustmentRow


@attrs.frozen(slots=True)
class Stored:
    """A row, with the run that last sent it and when (on that run's monotonic clock), and
    the run that last re-sent it."""

    row: AdjustmentRow
    sent_run: int | None
    sent_clock: float | None
    resent_run: int | None = None
