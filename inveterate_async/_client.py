"""The async client for the credits endpoints."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from decimal import Decimal
from types import TracebackType

import aiohttp

from ._errors import PaginationError
from ._fanout import CreditStream, CustomerId, OnError
from ._models import Credit, CreditPage, CreditResult
from ._redact import Redactor
from ._request import (
    DEFAULT_BASE_URL,
    check_api_key,
    check_base_url,
    check_positive_int,
    create_credit_request,
    cursor_text,
    encode_customer_id,
    list_credits_request,
    request_headers,
)
from ._response import read_credit_result, read_credits_page
from ._retry import RetryPolicy
from ._transport import Sleep, Transport


class InveterateClient:
    """Async client for the Inveterate Public API v2.0 credits endpoints.

    Use it as ``async with InveterateClient(...) as client:``, or call
    :meth:`aclose` when done. A ``session`` you pass in is borrowed: the client
    uses it and never closes it.

    :param api_key: the private API key; defaults to ``$INVETERATE_API_KEY``.
    :param base_url: the API root; defaults to ``$INVETERATE_BASE_URL``, else the
        production API. Must be https, except for loopback hosts.
    :param timeout: seconds for a whole attempt, or an ``aiohttp.ClientTimeout``.
    :param max_retries: extra attempts for reads on network errors, timeouts, 429
        and 500/502/503/504; writes are retried only when they cannot have been applied.
    :param backoff_base: the first retry waits up to this many seconds (doubling,
        capped at 8 s, with full jitter); a Retry-After header takes precedence.
    :param sleep: the coroutine used to wait between retries (``asyncio.sleep``).
    """

    __slots__ = ("_base_url", "_redactor", "_transport")

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        session: aiohttp.ClientSession | None = None,
        timeout: float | aiohttp.ClientTimeout = 30.0,
        max_retries: int = 2,
        backoff_base: float = 0.5,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        key = check_api_key(
            api_key if api_key is not None else os.environ.get("INVETERATE_API_KEY")
        )
        self._base_url = check_base_url(
            base_url or os.environ.get("INVETERATE_BASE_URL") or DEFAULT_BASE_URL
        )
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries must be an int >= 0, got {max_retries!r}")
        if not isinstance(backoff_base, (int, float)) or not backoff_base >= 0:
            raise ValueError(f"backoff_base must be a number >= 0, got {backoff_base!r}")
        self._redactor = Redactor(key)
        self._transport = Transport(
            headers=request_headers(key),
            session=session,
            timeout=_client_timeout(timeout),
            policy=RetryPolicy(max_retries=max_retries, backoff_base=float(backoff_base)),
            sleep=sleep,
            redactor=self._redactor,
        )

    def __repr__(self) -> str:
        return f"InveterateClient(base_url={self._base_url!r}, api_key='[redacted]')"

    @property
    def base_url(self) -> str:
        """The API root every request goes to."""
        return self._base_url

    async def __aenter__(self) -> InveterateClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the client's own session (a borrowed one stays open). Idempotent."""
        await self._transport.aclose()

    async def get_credits_page(
        self, customer_id: CustomerId, *, limit: int | None = None, cursor: str | None = None
    ) -> CreditPage:
        """Fetch one page of a member's credit ledger.

        ``cursor`` is a previous page's ``next_cursor``; it is URL-encoded for you.
        Retried on transient failures (a read cannot change anything).
        """
        request = list_credits_request(self._base_url, customer_id, limit=limit, cursor=cursor)
        response = await self._transport.send(request)
        return read_credits_page(request, response, self._redactor)

    def iter_credit_pages(
        self,
        customer_id: CustomerId,
        *,
        page_size: int | None = None,
        cursor: str | None = None,
    ) -> AsyncIterator[CreditPage]:
        """Yield a member's ledger page by page, following cursors to the end.

        Arguments are checked at the call. Each page is read completely and its
        connection released before it is yielded, so stopping early never holds a
        connection. A cursor seen twice raises :class:`PaginationError` instead of
        looping forever.
        """
        encode_customer_id(customer_id)
        if page_size is not None:
            check_positive_int("page_size", page_size)
        return self._pages(customer_id, page_size, cursor_text(cursor))

    async def _pages(
        self, customer_id: CustomerId, page_size: int | None, cursor: str | None
    ) -> AsyncIterator[CreditPage]:
        seen = {cursor} if cursor is not None else set()
        while True:
            page = await self.get_credits_page(customer_id, limit=page_size, cursor=cursor)
            yield page
            cursor = page.next_cursor
            if cursor is None:
                return
            if cursor in seen:
                raise PaginationError(
                    f"the API returned cursor {cursor!r} twice for member "
                    f"{customer_id!r}; stopping instead of looping"
                )
            seen.add(cursor)

    def iter_credits(
        self,
        customer_id: CustomerId,
        *,
        page_size: int | None = None,
        cursor: str | None = None,
    ) -> AsyncIterator[Credit]:
        """Yield every credit of a member's ledger, fetching pages as needed.

        Memory stays at one page. To resume after an interruption, keep the
        ``next_cursor`` of the last page you finished (see :meth:`iter_credit_pages`).
        """
        return self._credits(
            self.iter_credit_pages(customer_id, page_size=page_size, cursor=cursor)
        )

    @staticmethod
    async def _credits(pages: AsyncIterator[CreditPage]) -> AsyncIterator[Credit]:
        async for page in pages:
            for credit in page.credits:
                yield credit

    def iter_credits_many(
        self,
        customer_ids: Iterable[CustomerId] | AsyncIterable[CustomerId],
        *,
        concurrency: int = 8,
        page_size: int | None = None,
        on_error: OnError = "raise",
    ) -> CreditStream:
        """Stream ``(customer_id, credit)`` for many members, ``concurrency`` at a time.

        ``customer_ids`` may be any iterable or async iterable; it is read lazily.
        Each member's credits arrive in ledger order (members interleave). A slow
        consumer pauses the fetching: memory stays at about ``2 * concurrency`` pages.

        ``on_error="raise"`` (default): the first member that fails raises
        :class:`MemberError` (its ``error`` is the typed cause) and the others are
        cancelled. ``on_error="collect"``: failed members are recorded in the
        stream's ``failures`` (with the cursor to resume from) and the rest go on.

        Wrap the loop in ``async with`` so that leaving it early cancels every
        in-flight request at once::

            async with client.iter_credits_many(ids, on_error="collect") as stream:
                async for customer_id, credit in stream:
                    ...
            for failure in stream.failures:
                ...
        """
        check_positive_int("concurrency", concurrency)
        if page_size is not None:
            check_positive_int("page_size", page_size)
        if on_error not in ("raise", "collect"):
            raise ValueError(f'on_error must be "raise" or "collect", got {on_error!r}')
        return CreditStream(
            lambda customer_id: self.iter_credit_pages(customer_id, page_size=page_size),
            customer_ids,
            concurrency=concurrency,
            on_error=on_error,
        )

    async def create_credit(
        self,
        customer_id: CustomerId,
        amount: int | Decimal | str | float,
        *,
        note: str | None = None,
        force: bool | None = None,
    ) -> CreditResult:
        """Add (positive ``amount``) or remove (negative) store credit for a member.

        ``amount`` is sent with its exact digits. Never retried once it may have
        reached the server: on :class:`ServerError` or :class:`APIConnectionError`
        with ``outcome_unknown`` set, check the ledger before trying again.
        """
        request = create_credit_request(self._base_url, customer_id, amount, note=note, force=force)
        response = await self._transport.send(request)
        return read_credit_result(request, response, self._redactor)


def _client_timeout(timeout: float | aiohttp.ClientTimeout) -> aiohttp.ClientTimeout:
    if isinstance(timeout, aiohttp.ClientTimeout):
        return timeout
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    return aiohttp.ClientTimeout(total=float(timeout))
