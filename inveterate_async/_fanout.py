"""Streaming many members' ledgers at once, with bounded concurrency and backpressure."""

from __future__ import annotations

import asyncio
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

from ._errors import InveterateError
from ._models import Credit, CreditPage

CustomerId = str | int
OnError = Literal["raise", "collect"]
PageSource = Callable[[CustomerId], AsyncIterator[CreditPage]]


@attrs.frozen(slots=True)
class MemberFailure:
    """A member whose ledger could not be read to the end.

    ``cursor`` is where to resume that member (None: from the start); the credits
    before it were delivered.
    """

    customer_id: CustomerId
    error: Exception
    cursor: str | None


class MemberError(InveterateError):
    """Raised by ``iter_credits_many(on_error="raise")`` for the first member that failed.

    ``error`` (also ``__cause__``) is the typed cause; ``cursor`` is where to
    resume that member.
    """

    def __init__(self, customer_id: CustomerId, error: Exception, cursor: str | None) -> None:
        self.customer_id = customer_id
        self.error = error
        self.cursor = cursor
        super().__init__(f"member {customer_id!r}: {type(error).__name__}: {error}")


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


class CreditStream:
    """Async iterator of ``(customer_id, credit)`` over many members' ledgers.

    Returned by :meth:`InveterateClient.iter_credits_many`. Use ``async with`` around
    the loop so that leaving it early cancels the in-flight requests at once (a
    plain ``async for`` cancels them when the iterator is garbage-collected).
    """

    def __init__(
        self,
        pages_of: PageSource,
        customer_ids: Iterable[CustomerId] | AsyncIterable[CustomerId],
        *,
        concurrency: int,
        on_error: OnError,
    ) -> None:
        #: Members that failed (with ``on_error="collect"``), in the order they failed.
        self.failures: list[MemberFailure] = []
        #: Members finished so far, successfully or not.
        self.members_done = 0
        self._pages_of = pages_of
        self._next_id = _id_source(customer_ids)
        self._concurrency = concurrency
        self._on_error = on_error
        self._iterator: AsyncGenerator[tuple[CustomerId, Credit], None] | None = None

    def __aiter__(self) -> AsyncIterator[tuple[CustomerId, Credit]]:
        if self._iterator is None:
            self._iterator = self._run()
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

    async def _run(self) -> AsyncGenerator[tuple[CustomerId, Credit], None]:
        # Each worker holds at most one page while the queue holds at most
        # `concurrency` more: a slow consumer stops the fetching instead of buffering.
        queue: asyncio.Queue[object] = asyncio.Queue(self._concurrency)
        workers = [asyncio.create_task(self._work(queue)) for _ in range(self._concurrency)]
        running = len(workers)
        try:
            while running:
                item = await queue.get()
                if isinstance(item, _Page):
                    customer_id = item.customer_id
                    for credit in item.page.credits:
                        yield customer_id, credit
                elif isinstance(item, _MemberDone):
                    self.members_done += 1
                    if item.failure is not None:
                        self._fail(item.failure)
                elif isinstance(item, _WorkerCrashed):
                    raise item.error
                else:
                    running -= 1
        finally:
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    def _fail(self, failure: MemberFailure) -> None:
        if self._on_error == "raise":
            raise MemberError(failure.customer_id, failure.error, failure.cursor) from failure.error
        self.failures.append(failure)

    async def _work(self, queue: asyncio.Queue[object]) -> None:
        try:
            while (customer_id := await self._next_id()) is not _NO_MORE:
                failure = await self._fetch(cast(CustomerId, customer_id), queue)
                await queue.put(_MemberDone(failure))
        except Exception as exc:
            # Not one member's fault (the id source failed, the client was closed):
            # hand it to the consumer, which stops everything.
            await queue.put(_WorkerCrashed(exc))
            return
        await queue.put(_WORKER_DONE)

    async def _fetch(
        self, customer_id: CustomerId, queue: asyncio.Queue[object]
    ) -> MemberFailure | None:
        cursor: str | None = None
        try:
            async for page in self._pages_of(customer_id):
                await queue.put(_Page(customer_id, page))
                cursor = page.next_cursor
        except (InveterateError, ValueError) as exc:
            return MemberFailure(customer_id, exc, cursor)
        return None
