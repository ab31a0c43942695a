"""The async client for the credits endpoints: a facade over the protocol and transport."""

from __future__ import annotations

import asyncio
import copy
import os
import sys
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from functools import partial
from types import TracebackType
from typing import TypeVar

import aiohttp

from ._client_writes import CreditWrites
from ._config import (
    UNSET,
    Unset,
    env_flag,
)
from ._http.caller import Caller
from ._http.request import (
    DEFAULT_BASE_URL,
    check_api_key,
    check_base_url,
    check_positive_int,
    credits_page_request,
    list_credits_request,
)
from ._http.response import read_credits_page
from ._http.sending import Sleep
from ._http.transport import DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_RESPONSE_BYTES
from ._models import Credit, CreditPage, LedgerPosition
from ._pagination import PageT, credits_of, ledger_pages
from ._streaming.failfast import DEFAULT_ABORT_AFTER
from ._streaming.fanout import CreditStream, OnError
from ._streaming.members import CustomerId, Members
from ._streaming.messages import HandOver, PageRead

if sys.version_info >= (3, 11):
    from typing import Self
else:
    from typing_extensions import Self

T = TypeVar("T")


class InveterateClient(CreditWrites):
    """Async client for the Inveterate Public API v2.0 credits endpoints.

    Use it as ``async with InveterateClient(...) as client:``, or call :meth:`aclose`
    when done. One client belongs to one event loop. A ``session`` you pass in is
    borrowed: the client uses it (its connector, proxies and tracing) and never closes
    it, and none of its defaults can change what the client does.

    :param api_key: the private API key; defaults to ``$INVETERATE_API_KEY``.
    :param base_url: the API root; defaults to ``$INVETERATE_BASE_URL``, else the
        production API. Must be https, except for loopback hosts.
    :param session: an ``aiohttp.ClientSession`` to borrow instead of owning one.
    :param timeout: seconds for one attempt, or an ``aiohttp.ClientTimeout``.
    :param deadline: seconds for a whole call, retries and waits included (None: no
        limit); each call can override it.
    :param max_retries: extra attempts for reads on network errors, timeouts, 429
        and 500/502/503/504; writes are retried only when they cannot have been applied.
    :param backoff_base: the first retry waits up to this many seconds (doubling,
        capped at 8 s, with full jitter); a Retry-After header takes precedence.
    :param max_connections: the own session's connection pool size (raised to a
        fan-out's ``concurrency`` when that is larger and no request was made yet).
    :param max_response_bytes: the most of a response body the client reads; a
        larger body is an error, never an out-of-memory.
    :param allow_insecure_http: allow plain http to a host that is not this machine (a
        sandbox in docker-compose); defaults to ``$INVETERATE_ALLOW_INSECURE_HTTP=1``.
        Never allowed for the production API.
    :param sleep: the coroutine used to wait between retries (``asyncio.sleep``).
    :raises ValueError: for a missing key or any invalid setting.
    """

    __slots__ = ("_base_url", "_caller")

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        session: aiohttp.ClientSession | None = None,
        timeout: float | aiohttp.ClientTimeout = 30.0,
        deadline: float | None = None,
        max_retries: int = 2,
        backoff_base: float = 0.5,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        allow_insecure_http: bool | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        key = check_api_key(
            api_key if api_key is not None else os.environ.get("INVETERATE_API_KEY")
        )
        if base_url is None:
            base_url = os.environ.get("INVETERATE_BASE_URL") or DEFAULT_BASE_URL
        if allow_insecure_http is None:
            allow_insecure_http = env_flag("INVETERATE_ALLOW_INSECURE_HTTP")
        self._base_url = check_base_url(base_url, allow_insecure_http=allow_insecure_http)
        self._caller = Caller(
            key,
            session=session,
            timeout=timeout,
            deadline=deadline,
            max_retries=max_retries,
            backoff_base=backoff_base,
            max_connections=max_connections,
            max_response_bytes=max_response_bytes,
            sleep=sleep,
        )

    def __repr__(self) -> str:
        return f"InveterateClient(base_url={self._base_url!r}, api_key='[redacted]')"

    @property
    def base_url(self) -> str:
        """The API root every request goes to."""
        return self._base_url

    def _reveals_key(self, text: str) -> bool:
        # For the layers above that store what the API sends (an export's state file).
        return self._caller.reveals_key(text)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the client's own session (a borrowed one stays open). Idempotent.

        A request still in flight ends with :class:`APIConnectionError`; it is not retried.
        A client made by :meth:`with_options` leaves the session to the one it came from.
        """
        await self._caller.aclose()

    def with_options(
        self,
        *,
        timeout: float | aiohttp.ClientTimeout | None = None,
        max_retries: int | None = None,
        deadline: float | Unset | None = UNSET,
        headers: Mapping[str, str] | None = None,
    ) -> Self:
        """A client with other settings on the same session: cheap, no new connections.

        ``client.with_options(timeout=5, max_retries=0).get_credits_page(...)``. Options
        not given are kept. ``headers`` are added to every request; they can never
        replace the key or the SDK's own headers.

        :raises ValueError: for an invalid option or a reserved header.
        """
        derived = copy.copy(self)
        derived._caller = self._caller.with_options(
            timeout=timeout, max_retries=max_retries, deadline=deadline, headers=headers
        )
        return derived

    async def get_credits_page(
        self,
        customer_id: CustomerId,
        *,
        limit: int | None = None,
        cursor: str | None = None,
        deadline: float | Unset | None = UNSET,
    ) -> CreditPage:
        """Fetch one page of a member's credit ledger.

        :param customer_id: the member's id (any text; it is encoded as one path segment).
        :param limit: credits per page (the API's default if None).
        :param cursor: a previous page's ``next_cursor``; URL-encoded for you.
        :param deadline: seconds for this call, overriding the client's.
        :raises InveterateError: a typed error; reads are retried on transient failures.
        """
        request = list_credits_request(self._base_url, customer_id, limit=limit, cursor=cursor)
        return await self._caller.call(request, read_credits_page, deadline)

    def iter_credit_pages(
        self,
        customer_id: CustomerId,
        *,
        page_size: int | None = None,
        cursor: str | None = None,
        start: LedgerPosition | None = None,
    ) -> AsyncGenerator[CreditPage, None]:
        """Yield a member's ledger page by page, following cursors to the end.

        Arguments are checked at the call. Each page is read completely and its
        connection released before it is yielded, so stopping early never holds a
        connection. A cursor seen again raises :class:`PaginationError` instead of
        looping forever (memory stays constant however long the ledger).

        :param cursor: start after the page that gave this ``next_cursor``.
        :param start: or start from a saved :class:`LedgerPosition` (a page's
            ``position``); :attr:`LedgerPosition.FINISHED` yields nothing.
        """
        return self._pages(self._fetch_page, customer_id, page_size, cursor, start)

    def _pages(
        self,
        fetch_page: Callable[[str, str | None], Awaitable[PageT]],
        customer_id: CustomerId,
        page_size: int | None,
        cursor: object,
        start: LedgerPosition | None,
    ) -> AsyncGenerator[PageT, None]:
        return ledger_pages(
            fetch_page, self._base_url, customer_id, page_size, cursor, start, self._caller.scrub
        )

    async def _fetch_page(self, page_url: str, cursor: str | None) -> CreditPage:
        return await self._caller.call(credits_page_request(page_url, cursor), read_credits_page)

    async def _fetch_unread_page(
        self, hand_over: HandOver, page_url: str, cursor: str | None
    ) -> PageRead:
        # Read by the fan-out's consumer just before it delivers the credits, or by the
        # worker at once if the consumer is busy in the caller's loop (see _fanout).
        request = credits_page_request(page_url, cursor)
        response = await self._caller.send(request, UNSET)
        return await hand_over(partial(self._caller.read, read_credits_page, request, response))

    def iter_credits(
        self,
        customer_id: CustomerId,
        *,
        page_size: int | None = None,
        cursor: str | None = None,
        start: LedgerPosition | None = None,
    ) -> AsyncGenerator[Credit, None]:
        """Yield every credit of a member's ledger, fetching pages as needed.

        Memory stays at one page. To resume after an interruption, keep the
        ``position`` of the last page you finished (see :meth:`iter_credit_pages`).
        """
        return credits_of(
            self.iter_credit_pages(customer_id, page_size=page_size, cursor=cursor, start=start)
        )

    def iter_credits_many(
        self,
        customer_ids: Members,
        *,
        concurrency: int = 8,
        page_size: int | None = None,
        on_error: OnError = "raise",
        abort_after: int | None = DEFAULT_ABORT_AFTER,
    ) -> CreditStream:
        """Stream ``(customer_id, credit)`` for many members, ``concurrency`` at a time.

        ``customer_ids`` may be any iterable or async iterable of ids, read lazily; to
        resume, pass ``(customer_id, LedgerPosition)`` pairs or a mapping of id to
        position instead. An id given again (``1`` and ``"1"`` are one member) is read
        once, the first time. Each member's credits arrive in ledger order (members
        interleave). A member's next page is requested once you have taken its current
        one, so a slow consumer pauses the fetching and each worker holds at most one
        page. Pages that arrive while your loop waits for more are read (parsed,
        checked, credits made) just before their credits reach you; pages that arrive
        while your loop awaits something else are read at once by their worker. For
        checkpoints, read :meth:`CreditStream.events`.

        ``on_error="raise"`` (default): the first member that fails raises
        :class:`MemberError` (its ``error`` is the typed cause) and the others are
        cancelled. ``on_error="collect"``: failed members are recorded in the
        stream's ``failures`` (with the position to resume from) and the rest go on.

        ``abort_after`` (default 5; None: never): after that many members in a row fail
        for a cause no member can avoid (the key refused, the API unreachable), the
        whole stream stops with :class:`StreamAbortedError`.

        Wrap the loop in ``async with`` so that leaving it early cancels every
        in-flight request at once::

            async with client.iter_credits_many(ids, on_error="collect") as stream:
                async for customer_id, credit in stream:
                    ...
            for failure in stream.failures:
                ...

        :raises ValueError: for a bad argument, or a ``concurrency`` above the
            ``max_connections`` of a client that has already made requests.
        """
        check_positive_int("concurrency", concurrency)
        if page_size is not None:
            check_positive_int("page_size", page_size)
        if on_error not in ("raise", "collect"):
            raise ValueError(f'on_error must be "raise" or "collect", got {on_error!r}')
        if abort_after is not None:
            check_positive_int("abort_after", abort_after)
        self._caller.reserve_connections(concurrency)
        return CreditStream(
            lambda customer_id, start, hand_over: self._pages(
                partial(self._fetch_unread_page, hand_over), customer_id, page_size, None, start
            ),
            customer_ids,
            concurrency=concurrency,
            on_error=on_error,
            abort_after=abort_after,
        )
