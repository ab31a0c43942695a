"""A clock that moves only when told to, for deterministic tests of time-based behaviour."""

import asyncio
import time


class ManualClock:
    """POSIX time that stands still until :meth:`advance` or :meth:`sleep` moves it.

    Give the same clock to the sandbox, the client's ``sleep`` and ``apply_credits`` to
    test settle windows and delayed visibility without real waiting::

        clock = ManualClock()
        sandbox = Sandbox(clock=clock, visibility_delay=60)
        client = InveterateClient(key, base_url=sandbox.base_url, sleep=clock.sleep)
        report = await client.apply_credits(rows, journal, settle=300, clock=clock)

    :param start: the first reading, in seconds since the epoch (default: now).
    """

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else float(start)

    def __call__(self) -> float:
        """The current reading, in seconds since the epoch."""
        return self._now

    def __repr__(self) -> str:
        return f"ManualClock({self._now!r})"

    def advance(self, seconds: float) -> None:
        """Move the clock forward.

        :raises ValueError: if ``seconds`` is negative.
        """
        if seconds < 0:
            raise ValueError("a clock cannot go back")
        self._now += seconds

    async def sleep(self, seconds: float) -> None:
        """Advance by ``seconds`` (negative counts as 0) and let other tasks run once."""
        self.advance(max(0.0, seconds))
        await asyncio.sleep(0)
