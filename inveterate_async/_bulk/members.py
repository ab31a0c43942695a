"""A run's rows, a member at a time: read from the journal in (member, position) order
a chunk at a time, each member's ledger read at most once per pass and shared by its
chunks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import attrs

from .._errors import InveterateError
from .context import RunContext
from .ledger import Ledger, read_ledger
from .stored import Stored

UNIT_ROWS = 128


class Look:
    """One member's ledger, read the first time a worker asks (again if that worker was
    cancelled), then shared."""

    def __init__(self, read: Callable[[], Awaitable[Ledger]]) -> None:
        self._read = read
        self._lock = asyncio.Lock()
        self._result: Ledger | InveterateError | None = None
        self._claimed = False

    def claim(self) -> bool:
        """True the first time only: for work done once per member, not per chunk."""
        first, self._claimed = not self._claimed, True
        return first

    async def ledger(self) -> Ledger:
        """The ledger.

        :raises InveterateError: the read failed (every caller gets the same error).
        """
        async with self._lock:
            if self._result is None:
                try:
                    self._result = await self._read()
                except InveterateError as error:
                    self._result = error
        if isinstance(self._result, InveterateError):
            raise self._result
        return self._result


@attrs.frozen
class Unit:
    """Consecutive rows of one member, and its shared ledger read."""

    member: str
    rows: tuple[Stored, ...]
    look: Look


async def units(ctx: RunContext, where: str) -> AsyncIterator[Unit]:
    """The rows matching ``where`` (SQL; ``:run`` is this run), up to :data:`UNIT_ROWS`
    of one member at a time, in member order."""
    after: tuple[str, int] = ("", -1)
    member = ""
    look: Look | None = None
    rows: list[Stored] = []
    while True:
        found = await ctx.journal._by_member(where, after, UNIT_ROWS)
        for stored, _ in found:
            customer = stored.row.adjustment.customer_id
            if look is None or customer != member:
                if rows and look is not None:
                    yield Unit(member, tuple(rows), look)
                member, look, rows = customer, Look(_reader(ctx, customer)), []
            rows.append(stored)
        if len(found) < UNIT_ROWS:
            break
        after = (member, found[-1][1])
        if look is not None:  # the member's rows may go on: the next unit shares its look
            yield Unit(member, tuple(rows), look)
            rows = []
    if rows and look is not None:
        yield Unit(member, tuple(rows), look)


def _reader(ctx: RunContext, member: str) -> Callable[[], Awaitable[Ledger]]:
    async def read() -> Ledger:
        return await read_ledger(ctx.api, member, keep_all=not ctx.options.tag_notes)

    return read
