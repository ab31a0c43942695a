"""Following cursors: one member's pages, the cycle guard, and the fan-out over many.

The page loop and :class:`CreditStream` only see a ``fetch`` function per member; how a
page is requested and read is the client's business.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import deque
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
)
from types import TracebackType
from typing import Literal, cast

import attrs

from ._errors import InveterateError, MemberError, PaginationError
from ._models import Credit, CreditPage

CustomerId = str | int
OnError = Literal["raise", "collect"]
FetchPage = Callable[[str | None], Awaitable[CreditPage]]
PageSource = Callable[[CustomerId], AsyncIterator[CreditPage]]

_RECENT_CURSORS = 1024


class CycleGuard:
    """Tells whether a cursor was seen before, in constant memory.

    The last ``window`` cursors are remembered exactly, so a short loop is caught at its
    first repeat; longer loops are caught by Brent's algorithm (one saved cursor that
    moves at powers of two) within about twice the loop's start plus its length.
    """

    __slots__ = ("_order", "_power", "_recent", "_saved", "_steps", "_window")

    def __init__(self, first: str | None = None, window: int = _RECENT_CURSORS) -> None:
        self._window = window
        self._recent: set[str] = set()
        self._order: deque[str] = deque()
        self._saved = first
        self._power = 1
        self._steps = 0

    def repeated(self, cursor: str) -> bool:
        """Record ``cursor``; True if it was seen before (the ledger would loop)."""
        if cursor == self._saved or cursor in self._recent:
            return True
        self._recent.add(cursor)
        self._order.append(cursor)
        if len(self._order) > self._window:
            self._recent.discard(self._order.popleft())
        self._steps += 1
        if self._steps == self._power:
            self._saved = cursor
            self._power *= 2
            self._steps = 0
        return False


async def iter_pages(
    fetch: FetchPage,
    customer_id: CustomerId,
    cursor: str | None,
    scrub: Callable[[InveterateError], None],
) -> AsyncGenerator[CreditPage, None]:
    """Yield pages from ``cursor`` to the last; raise :class:`PaginationError` on a loop.

    ``scrub`` is the client's error choke point, applied to the error raised here.
    """
    guard = CycleGuard(cursor)
    while True:
        page = await fetch(cursor)
        yield page
        cursor = page.next_cursor
        if cursor is None:
            return
        if guard.repeated(cursor):
            error = PaginationError(
                f"the API returned cursor {cursor!r} again for member {customer_id!r}; "
                "stopping instead of looping"
            )
            scrub(error)
            raise error


@attrs.frozen(slots=True)
class MemberFailure:
    """A member whose ledger could not be read to the end.

    ``cursor`` is where to resume that member (None: from the start); the credits
    before it were delivered.
    """

    customer_id: CustomerId
    error: Exception
    cursor: str | None


@attrs.frozen(slots=True)
class _Page:
    customer_id: CustomerId
    page: CreditPage


@attrs.frozen(slots=True)
class _MemberDone:
    failure: MemberFailure | None


@attrs.frozen(slots=True)
class _WorkerCrashed:
    error: Exception


_WORKER_DONE = object()
_NO_MORE = object()
NextId = Callable[[], Awaitable[object]]

# Workers are kept alive here, not by the stream: a stream dropped without being closed
# is then collected on its own, and its finalizer cancels them (none is destroyed pending).
_RUNNING: set[asyncio.Task[None]] = set()


def _id_source(ids: Iterable[CustomerId] | AsyncIterable[CustomerId]) -> NextId:
    """One shared, lazy way for the workers to take the next id (or _NO_MORE)."""
    if isinstance(ids, (str, bytes)):
        raise ValueError("customer_ids must be an iterable of ids, not a single str")
    if isinstance(ids, AsyncIterable):
        iterator = ids.__aiter__()
        # An async iterator must not be advanced by two tasks at once.
        lock = asyncio.Lock()

        async def next_async() -> object:
            async with lock:
                try:
                    return await iterator.__anext__()
                except StopAsyncIteration:
                    return _NO_MORE

        return next_async
    if not isinstance(ids, Iterable):
        raise ValueError(f"customer_ids must be iterable, not {type(ids).__name__}")
    sync_iterator = iter(ids)

    async def next_sync() -> object:
        return next(sync_iterator, _NO_MORE)

    return next_sync


@attrs.define
class _Tally:
    """What the stream reports; shared by the stream and its consumer generator."""

    failures: list[MemberFailure] = attrs.field(factory=list)
    members_done: int = 0


class CreditStream:
    """Async iterator of ``(customer_id, credit)`` over many members' ledgers.

    Returned by :meth:`InveterateClient.iter_credits_many`. Use ``async with`` around
    the loop so that leaving it early cancels the in-flight requests at once; a stream
    that is simply dropped cancels them when it is garbage-collected.
    """

    def __init__(
        self,
        pages_of: PageSource,
        customer_ids: Iterable[CustomerId] | AsyncIterable[CustomerId],
        *,
        concurrency: int,
        on_error: OnError,
    ) -> None:
        self._tally = _Tally()
        self._pages_of = pages_of
        self._next_id = _id_source(customer_ids)
        self._concurrency = concurrency
        self._on_error = on_error
        self._iterator: AsyncGenerator[tuple[CustomerId, Credit], None] | None = None

    @property
    def failures(self) -> list[MemberFailure]:
        """Members that failed (with ``on_error="collect"``), in the order they failed."""
        return self._tally.failures

    @property
    def members_done(self) -> int:
        """Members finished so far, successfully or not."""
        return self._tally.members_done

    def __aiter__(self) -> AsyncIterator[tuple[CustomerId, Credit]]:
        if self._iterator is None:
            workers: list[asyncio.Task[None]] = []
            self._iterator = _consume(
                self._pages_of,
                self._next_id,
                self._concurrency,
                self._on_error,
                self._tally,
                workers,
            )
            # A stream caught in a reference cycle is only found by the garbage collector.
            weakref.finalize(self._iterator, _cancel_all, workers)
        return self._iterator

    async def __anext__(self) -> tuple[CustomerId, Credit]:
        return await self.__aiter__().__anext__()

    async def aclose(self) -> None:
        """Stop: cancel every in-flight request and wait for the workers to end."""
        if self._iterator is not None:
            await self._iterator.aclose()

    async def __aenter__(self) -> CreditStream:
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


async def _consume(
    pages_of: PageSource,
    next_id: NextId,
    concurrency: int,
    on_error: OnError,
    tally: _Tally,
    workers: list[asyncio.Task[None]],
) -> AsyncGenerator[tuple[CustomerId, Credit], None]:
    # Each worker holds at most one page while the queue holds at most `concurrency`
    # more: a slow consumer stops the fetching instead of buffering.
    queue: asyncio.Queue[object] = asyncio.Queue(concurrency)
    workers.extend(asyncio.create_task(_work(queue, next_id, pages_of)) for _ in range(concurrency))
    for worker in workers:
        _RUNNING.add(worker)
        worker.add_done_callback(_RUNNING.discard)
    running = len(workers)
    try:
        while running:
            item = await queue.get()
            if isinstance(item, _Page):
                customer_id = item.customer_id
                for credit in item.page.credits:
                    yield customer_id, credit
            elif isinstance(item, _MemberDone):
                tally.members_done += 1
                failure = item.failure
                if failure is not None:
                    if on_error == "raise":
                        raise MemberError(
                            failure.customer_id, failure.error, failure.cursor
                        ) from failure.error
                    tally.failures.append(failure)
            elif isinstance(item, _WorkerCrashed):
                raise item.error
            else:
                running -= 1
    finally:
        _cancel_all(workers)
        await asyncio.gather(*workers, return_exceptions=True)


async def _work(queue: asyncio.Queue[object], next_id: NextId, pages_of: PageSource) -> None:
    try:
        while (customer_id := await next_id()) is not _NO_MORE:
            failure = await _fetch(cast(CustomerId, customer_id), queue, pages_of)
            await queue.put(_MemberDone(failure))
    except Exception as exc:
        # Not one member's fault (the id source failed, the client was closed):
        # hand it to the consumer, which stops everything.
        await queue.put(_WorkerCrashed(exc))
        return
    await queue.put(_WORKER_DONE)


async def _fetch(
    customer_id: CustomerId, queue: asyncio.Queue[object], pages_of: PageSource
) -> MemberFailure | None:
    cursor: str | None = None
    try:
        async for page in pages_of(customer_id):
            await queue.put(_Page(customer_id, page))
            cursor = page.next_cursor
    except (InveterateError, ValueError) as exc:
        return MemberFailure(customer_id, exc, cursor)
    return None
