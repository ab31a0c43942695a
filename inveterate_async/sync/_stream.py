"""``iter_credits_many`` for blocking code: the stream's workers run on the client's loop."""

from __future__ import annotations

from collections.abc import Iterator
from types import TracebackType

from .._models import Credit, LedgerPage, MemberFailure, MemberFinished
from .._streaming.fanout import CreditStream as AsyncCreditStream
from .._streaming.members import CustomerId
from ._loop import LoopThread


class CreditStream:
    """Many members' ledgers, read ``concurrency`` at a time on the client's loop; see
    :class:`inveterate_async.CreditStream`. Iterate it for ``(customer_id, credit)``, or
    :meth:`events` for checkpoints; use it as a context manager so that leaving early
    cancels every request in flight."""

    def __init__(self, stream: AsyncCreditStream, loop: LoopThread) -> None:
        self._stream = stream
        self._loop = loop

    @property
    def failures(self) -> list[MemberFailure]:
        """Members that failed (with ``on_error="collect"``), in the order they failed."""
        return self._stream.failures

    @property
    def members_done(self) -> int:
        """How many members have been read to the end (or failed)."""
        return self._stream.members_done

    def __iter__(self) -> Iterator[tuple[CustomerId, Credit]]:
        return self._loop.iterate(self._stream, close=False)

    def events(self) -> Iterator[LedgerPage | MemberFinished]:
        """Pages and member ends, in order (see :meth:`inveterate_async.CreditStream.events`)."""
        return self._loop.iterate(self._stream.events(), close=False)

    def close(self) -> None:
        """Stop the stream: every request in flight is cancelled. Idempotent."""
        if self._loop.running:
            self._loop.run(self._stream.aclose)

    def __enter__(self) -> CreditStream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
