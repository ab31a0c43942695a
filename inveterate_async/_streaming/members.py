"""The members a stream reads: how they may be given, and one shared way to take the
next."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Mapping

from .._models import LedgerPosition

CustomerId = str | int
MemberItem = CustomerId | tuple[CustomerId, LedgerPosition]
Members = Iterable[MemberItem] | AsyncIterable[MemberItem] | Mapping[CustomerId, LedgerPosition]
Member = tuple[CustomerId, LedgerPosition]
NextMember = Callable[[], Awaitable[Member | None]]


def member_of(item: object) -> Member:
    """A member as given (an id, or an id and where to start), as ``(id, position)``."""
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], LedgerPosition):
        return item[0], item[1]
    return item, LedgerPosition.START  # type: ignore[return-value]


def member_source(members: Members) -> NextMember:
    """One shared, lazy way for the workers to take the next member (None at the end).

    An id given again (as text: ``1`` and ``"1"`` are one member) is skipped: two copies
    read at once would interleave the member's credits. The ids seen are kept, one
    string each, for the life of the stream.
    """
    take = _source(members)
    seen: set[str] = set()

    async def next_new() -> Member | None:
        while (member := await take()) is not None:
            key = str(member[0])
            if key not in seen:  # no await between the check and the add: one worker wins
                seen.add(key)
                return member
        return None

    return next_new


def _source(members: Members) -> NextMember:
    if isinstance(members, (str, bytes)):
        raise ValueError("customer_ids must be an iterable of ids, not a single str")
    if isinstance(members, Mapping):
        members = list(members.items())
    if isinstance(members, AsyncIterable):
        iterator = members.__aiter__()
        # An async iterator must not be advanced by two tasks at once.
        lock = asyncio.Lock()

        async def next_async() -> Member | None:
            async with lock:
                try:
                    return member_of(await iterator.__anext__())
                except StopAsyncIteration:
                    return None

        return next_async
    if not isinstance(members, Iterable):
        raise ValueError(f"customer_ids must be iterable, not {type(members).__name__}")
    sync_iterator = iter(members)
    end = object()

    async def next_sync() -> Member | None:
        item = next(sync_iterator, end)
        return None if item is end else member_of(item)

    return next_sync
