"""Reading many members' ledgers at once: bounded concurrency, backpressure, checkpoints.

Workers take members from a shared source and fetch their pages. A response that
arrives while the consumer waits for work is handed over unread: the consumer reads it
(parse, checks, ``Credit`` objects) just before it delivers the credits, so the page
is made and used while fresh in the CPU's caches, as in a per-member loop. One that
arrives while the consumer is busy awaiting in the caller's loop is read by its
worker at once, on CPU that would otherwise idle. Either way the consumer hands the
page's cursor back when it takes the page, and only then does the worker ask for the
next one: each worker holds at most one response or page.
"""

from __future__ import annotations

import asyncio
import sys
import weakref
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Callable,
)
from functools import partial
from types import TracebackType
from typing import Any, Literal

import attrs

if sys.version_info >= (3, 11):
    from typing import Self
else:
    from typing_extensions import Self

from .._errors import InveterateError, MemberError, StreamAbortedError
from .._models import (
    Credit,
    CreditPage,
    LedgerPage,
    LedgerPosition,
    MemberFailure,
    MemberFinished,
    position_after,
)
from .failfast import FailureStreak
from .members import CustomerId, Members, NextMember, member_source
from .messages import (
    WORKER_DONE,
    Aborted,
    Event,
    HandedOver,
    PageRead,
    PageSource,
    WorkerCrashed,
)

OnError = Literal["raise", "collect"]


# Workers are kept alive here, not by the stream: a stream dropped without being closed
# is then collected on its own, and its finalizer cancels them (none is destroyed pending).
_RUNNING: set[asyncio.Task[None]] = set()


@attrs.define
class _Tally:
    """What the stream reports; shared by the stream and its consumer generator."""

    failures: list[MemberFailure] = attrs.field(factory=list)
    members_done: int = 0


@attrs.define
class _Consumer:
    """Whether the consumer is waiting for work (rather than busy in the caller's loop)."""

    waiting: bool = False


class CreditStream:
    """Many members' ledgers, read ``concurrency`` at a time.

    Returned by :meth:`InveterateClient.iter_credits_many`. Iterate it for
    ``(customer_id, credit)`` pairs, or call :meth:`events` for page-level events with
    checkpoints (one or the other). Use ``async with`` around the loop so that leaving
    it early cancels the in-flight requests at once; a stream that is simply dropped
    cancels them when it is garbage-collected.
    """

    def __init__(
        self,
        pages_of: PageSource,
        members: Members,
        *,
        concurrency: int,
        on_error: OnError,
        abort_after: int | None,
    ) -> None:
        self._tally = _Tally()
        self._pages_of = pages_of
        self._next_member = member_source(members)
        self._concurrency = concurrency
        self._on_error = on_error
        self._abort_after = abort_after
        self._iterator: AsyncGenerator[Any, None] | None = None
        self._mode = ""

    @property
    def failures(self) -> list[MemberFailure]:
        """Members that failed (with ``on_error="collect"``), in the order they failed."""
        return self._tally.failures

    @property
    def members_done(self) -> int:
        """Members finished so far, successfully or not."""
        return self._tally.members_done

    def _read(self, mode: str) -> AsyncGenerator[Any, None]:
        if self._iterator is None:
            workers: list[asyncio.Task[None]] = []
            self._mode = mode
            self._iterator = _stream(
                self._pages_of,
                self._next_member,
                self._concurrency,
                self._on_error,
                FailureStreak(self._abort_after),
                self._tally,
                workers,
                as_events=mode == "events",
            )
            # A stream caught in a reference cycle is only found by the garbage collector.
            weakref.finalize(self._iterator, _cancel_all, workers)
        elif self._mode != mode:
            raise RuntimeError("a CreditStream is read once: as credits or as events")
        return self._iterator

    def __aiter__(self) -> AsyncIterator[tuple[CustomerId, Credit]]:
        return self._read("credits")

    async def __anext__(self) -> tuple[CustomerId, Credit]:
        return await self.__aiter__().__anext__()

    def events(self) -> AsyncIterator[Event]:
        """Page-level events: :class:`LedgerPage` for each page read (with the member's
        position after it) and :class:`MemberFinished` when a member is done.

        For workers that checkpoint: write a page's credits, then record its position;
        after a crash, pass each member's last position back to ``iter_credits_many``.
        """
        return self._read("events")

    async def aclose(self) -> None:
        """Stop: cancel every in-flight request and wait for the workers to end."""
        if self._iterator is not None:
            await self._iterator.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def _cancel_all(workers: list[asyncio.Task[None]]) -> None:
    for worker in workers:
        worker.cancel()


async def _stream(
    pages_of: PageSource,
    next_member: NextMember,
    concurrency: int,
    on_error: OnError,
    streak: FailureStreak,
    tally: _Tally,
    workers: list[asyncio.Task[None]],
    *,
    as_events: bool,
) -> AsyncGenerator[Any, None]:
    """Events, or ``(customer_id, credit)`` pairs: one generator, so that closing it
    (or collecting it) is one step."""
    # A worker waits for the consumer to take its page before it asks for the next one,
    # so the queue holds at most one page per worker (and its members' ends): a slow
    # consumer stops the fetching instead of buffering.
    queue: asyncio.Queue[object] = asyncio.Queue(concurrency)
    consumer = _Consumer()
    workers.extend(
        asyncio.create_task(_work(queue, consumer, next_member, pages_of, streak))
        for _ in range(concurrency)
    )
    for worker in workers:
        _RUNNING.add(worker)
        worker.add_done_callback(_RUNNING.discard)
    running = len(workers)
    try:
        while running:
            consumer.waiting = True
            item = await queue.get()
            consumer.waiting = False
            if type(item) is HandedOver:
                try:
                    page = item.read()
                except Exception as exc:
                    item.outcome.set_result(exc)  # the worker raises it: its member failed
                    continue
                item.outcome.set_result(PageRead(page.next_cursor))
                if as_events:
                    yield LedgerPage(item.customer_id, page)
                else:
                    customer_id = item.customer_id
                    for credit in page.credits:
                        yield customer_id, credit
                del page  # not held while waiting for the next page
            elif type(item) is MemberFinished:
                tally.members_done += 1
                error = item.error
                if error is not None:
                    if on_error == "raise":
                        raise MemberError(item.customer_id, error, item.position.cursor) from error
                    tally.failures.append(
                        MemberFailure(item.customer_id, error, item.position.cursor)
                    )
                if as_events:
                    yield item
            elif type(item) is Aborted:
                raise StreamAbortedError(item.cause, streak.limit or 0, item.error) from item.error
            elif isinstance(item, WorkerCrashed):
                raise item.error
            else:
                running -= 1
    finally:
        _cancel_all(workers)
        await asyncio.gather(*workers, return_exceptions=True)


async def _work(
    queue: asyncio.Queue[object],
    consumer: _Consumer,
    next_member: NextMember,
    pages_of: PageSource,
    streak: FailureStreak,
) -> None:
    try:
        while not streak.tripped and (member := await next_member()) is not None:
            finished = await _read_member(*member, queue, consumer, pages_of)
            # Counted here, before this worker takes another member: once the streak
            # trips, no worker starts a member that is bound to fail.
            cause = streak.record(finished.error)
            await queue.put(finished)
            if cause is not None and finished.error is not None:
                await queue.put(Aborted(cause, finished.error))
    except Exception as exc:
        # Not one member's fault (the id source failed, the client was closed):
        # hand it to the consumer, which stops everything.
        await queue.put(WorkerCrashed(exc))
        return
    await queue.put(WORKER_DONE)


async def _read_member(
    customer_id: CustomerId,
    start: LedgerPosition,
    queue: asyncio.Queue[object],
    consumer: _Consumer,
    pages_of: PageSource,
) -> MemberFinished:
    position = start
    if start.done:
        return MemberFinished(customer_id, position)
    new_future = asyncio.get_running_loop().create_future

    async def hand_over(read: Callable[[], CreditPage]) -> PageRead:
        if not consumer.waiting:
            # The consumer is awaiting in the caller's loop: read the page now (a bad
            # one fails the member here) instead of adding its reading to the caller's time.
            read = partial(_as_read, read())
        # The outcome is a value, not a future's exception: a worker cancelled before it
        # looks leaves no "exception was never retrieved" behind.
        outcome: asyncio.Future[PageRead | Exception] = new_future()
        await queue.put(HandedOver(customer_id, read, outcome))
        page_or_error = await outcome
        if isinstance(page_or_error, Exception):
            raise page_or_error
        return page_or_error

    try:
        async for page in pages_of(customer_id, start, hand_over):
            position = position_after(page.next_cursor)
    except (InveterateError, ValueError) as exc:
        return MemberFinished(customer_id, position, exc)
    return MemberFinished(customer_id, LedgerPosition.FINISHED)


def _as_read(page: CreditPage) -> CreditPage:
    return page
