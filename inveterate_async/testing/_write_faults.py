"""Seeded random faults on writes: shares of POSTs failed before or after applying, or dropped.

For rehearsing bulk adjustments (``inveterate sandbox --fail-writes-before ...``): every
outcome a write can have on the real API, in known proportions and reproducible for a seed.
The faults are ordinary :class:`~._faults.Fault` values, so :meth:`Sandbox._handle` applies
them exactly as it applies those queued with :meth:`Sandbox.fail_next`.
"""

import math
import random

import attrs

from ._faults import Fault, build_fault
from ._wire import RecordedRequest


@attrs.frozen
class WriteFaultShares:
    """The share (0 to 1) of POSTs that gets each fault; they sum to at most 1.

    :ivar before: answered 500 without applying the credit.
    :ivar after: the credit is applied, then 500 is answered.
    :ivar dropped: the credit is applied, then the connection is closed without an answer.
    """

    before: float = 0.0
    after: float = 0.0
    dropped: float = 0.0

    @property
    def total(self) -> float:
        """The share of POSTs that get any fault."""
        return math.fsum((self.before, self.after, self.dropped))


# Shares typed as decimals (0.1 + 0.2 + 0.7) may sum to a hair above 1 in binary.
_SUM_TOLERANCE = 1e-9


class RandomWriteFaults:
    """Picks which writes fail and how: one draw from ``random.Random(seed)`` per POST.

    A draw below ``before`` is a 500 before applying, below ``before + after`` a 500 after
    applying, below ``before + after + dropped`` a dropped connection after applying. The
    same POSTs in the same order get the same faults.
    """

    def __init__(self) -> None:
        self.shares = WriteFaultShares()
        self.seed = 0
        self._rng = random.Random(0)
        self._before = _fault(apply=False, disconnect=False)
        self._after = _fault(apply=True, disconnect=False)
        self._dropped = _fault(apply=True, disconnect=True)

    def configure(self, *, before: float, after: float, dropped: float, seed: int) -> None:
        """Fail these shares of POSTs from now on, drawn afresh from ``seed`` (all 0: stop).

        :raises ValueError: if a share is not a number from 0 to 1, or they sum above 1.
        """
        for name, share in (("before", before), ("after", after), ("dropped", dropped)):
            if (
                isinstance(share, bool)
                or not isinstance(share, (int, float))
                or not 0 <= share <= 1  # also refuses NaN
            ):
                raise ValueError(f"{name} must be a number from 0 to 1, got {share!r}")
        shares = WriteFaultShares(float(before), float(after), float(dropped))
        if shares.total > 1 + _SUM_TOLERANCE:
            raise ValueError(f"before + after + dropped must be at most 1, got {shares.total:g}")
        self.shares = shares
        self.seed = seed
        self._rng = random.Random(seed)

    def take(self, request: RecordedRequest) -> Fault | None:
        """The fault this request gets, if any (only POSTs of a ledger can get one)."""
        shares = self.shares
        if shares.total == 0 or request.method != "POST" or request.customer_id is None:
            return None
        draw = self._rng.random()
        if draw < shares.before:
            return self._before
        if draw < shares.before + shares.after:
            return self._after
        if draw < shares.total:
            return self._dropped
        return None


def _fault(*, apply: bool, disconnect: bool) -> Fault:
    # `remaining` is never counted down: RandomWriteFaults hands out the same three faults.
    return build_fault(
        500, 1, None, None, method="POST", customer_id=None, apply=apply, disconnect=disconnect
    )
