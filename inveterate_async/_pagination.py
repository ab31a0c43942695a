"""Following cursors: one member's pages, and the guard against cursors that loop.

The page loop only sees a ``fetch`` function; how a page is requested and read is the
client's business. The fan-out over many members is in ``_streaming``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable
from functools import partial
from typing import Any, Protocol, TypeVar

from ._errors import InveterateError, PaginationError
from ._http.request import check_positive_int, credits_page_url, cursor_text, encode_customer_id
from ._models import Credit, CreditPage, LedgerPosition


class _Page(Protocol):
    @property
    def next_cursor(self) -> str | None: ...


PageT = TypeVar("PageT", bound=_Page)

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
    fetch: Callable[[str | None], Awaitable[PageT]],
    customer_id: str | int,
    cursor: str | None,
    scrub: Callable[[InveterateError], None],
) -> AsyncGenerator[PageT, None]:
    """Yield pages from ``cursor`` to the last; raise :class:`PaginationError` on a loop.

    ``scrub`` is the client's error choke point, applied to the error raised here.
    """
    guard = CycleGuard(cursor)
    while True:
        page = await fetch(cursor)
        yield page
        cursor = page.next_cursor
        # Not held while the next page is read: its credits die young (see credits_of).
        del page
        if cursor is None:
            return
        if guard.repeated(cursor):
            error = PaginationError(
                f"the API returned cursor {cursor!r} again for member {customer_id!r}; "
                "stopping instead of looping"
            )
            scrub(error)
            raise error


def ledger_pages(
    fetch_page: Callable[[str, str | None], Awaitable[PageT]],
    base_url: str,
    customer_id: str | int,
    page_size: int | None,
    cursor: object,
    start: LedgerPosition | None,
    scrub: Callable[[InveterateError], None],
) -> AsyncGenerator[PageT, None]:
    """A member's pages from ``cursor`` or ``start``, each fetched by
    ``fetch_page(page_url, cursor)``; the arguments are checked here, before anything is
    sent.

    :raises ValueError: for a bad argument.
    """
    # Checked in the order of the arguments.
    encode_customer_id(customer_id)
    if page_size is not None:
        check_positive_int("page_size", page_size)
    first = start_cursor(cursor_text(cursor), start)
    # Encoded once per ledger; each page only adds its cursor.
    page_url = credits_page_url(base_url, customer_id, page_size)
    if isinstance(first, LedgerPosition):  # finished: nothing left to read
        return no_pages()
    return iter_pages(partial(fetch_page, page_url), customer_id, first, scrub)


def start_cursor(cursor: str | None, start: LedgerPosition | None) -> str | LedgerPosition | None:
    """The cursor to read from, or :attr:`LedgerPosition.FINISHED` when there is nothing
    left to read.

    :raises ValueError: for both ``cursor`` and ``start``, or a ``start`` of another type.
    """
    if start is None:
        return cursor
    if cursor is not None:
        raise ValueError("pass cursor or start, not both")
    if not isinstance(start, LedgerPosition):
        raise ValueError(f"start must be a LedgerPosition, not {type(start).__name__}")
    return LedgerPosition.FINISHED if start.done else start.cursor


async def no_pages() -> AsyncGenerator[Any, None]:
    """A finished ledger: nothing to read."""
    return
    yield


async def credits_of(pages: AsyncGenerator[CreditPage, None]) -> AsyncGenerator[Credit, None]:
    """The credits of ``pages``, in order; closing this closes ``pages``."""
    try:
        async for page in pages:
            for credit in page.credits:
                yield credit
            # Released before the next page is read: credits the caller has let go of
            # are freed now, not promoted by the garbage collector as survivors.
            del page
    finally:
        await pages.aclose()
