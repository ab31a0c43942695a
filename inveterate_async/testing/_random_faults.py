"""Seeded random transient failures on reads, for soak and multi-process tests."""

import random

from ._wire import RecordedRequest


class RandomFaults:
    """Picks which reads fail: each GET of a ledger fails with probability ``rate``.

    The draws come from one ``random.Random(seed)``, so a run with the same requests in
    the same order fails the same ones.
    """

    def __init__(self) -> None:
        self.rate = 0.0
        self.status = 503
        self._rng = random.Random(0)

    def configure(self, rate: float, *, seed: int, status: int) -> None:
        """Fail each ledger read with probability ``rate`` (0 stops failing).

        :raises ValueError: if ``rate`` is not within [0, 1] or ``status`` not 500-599.
        """
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
            raise ValueError(f"rate must be a number from 0 to 1, got {rate!r}")
        if not 500 <= status <= 599:
            raise ValueError("status must be between 500 and 599")
        self.rate = float(rate)
        self.status = status
        self._rng = random.Random(seed)

    def hit(self, request: RecordedRequest) -> bool:
        """Whether this request gets a transient failure (only ledger reads can)."""
        if self.rate == 0 or request.method != "GET" or request.customer_id is None:
            return False
        return self._rng.random() < self.rate
