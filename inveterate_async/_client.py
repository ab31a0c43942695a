"""The async client for the credits endpoints: a facade over the protocol and transport."""

from __future__ import annotations

import asyncio
import copy
import os
import sys
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Mapping
from decimal import Decimal
from functools import partial
from types import TracebackType
from typing import TypeVar

import aiohttp
import attrs

from ._bulk import AdjustmentReport, AdjustmentRow, BulkOptions, CreditAdjustment, Journal
from ._bulk import apply_credits as run_batch
from ._config import (
    UNSET,
    Unset,
    check_deadline,
    check_max_retries,
    client_timeout,
    env_flag,
    is_number,
)
from ._context import add_request_context
from ._errors import InveterateError
from ._exchange import PreparedRequest, Response
from ._http.request import (
    DEFAULT_BASE_URL,
    check_api_key,
    check_base_url,
    check_extra_headers,
    check_positive_int,
    create_credit_request,
    credits_page_request,
    credits_page_url,
    cursor_text,
    encode_customer_id,
    list_credits_request,
    request_headers,
)
from ._http.response import read_credit_result, read_credits_page
from ._http.retry import RetryPolicy
from ._http.sending import Sleep, send_with_retries
from ._http.transport import DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_RESPONSE_BYTES, AiohttpTransport
from ._models import Credit, CreditPage, CreditResult, LedgerPosition
from ._pagination import PageT, credits_of, iter_pages, no_pages, start_cursor
from ._redact import Redactor
from ._streaming.failfast import DEFAULT_ABORT_AFTER
from ._streaming.fanout import CreditStream, CustomerId, HandOver, Members, OnError, PageRead

if sys.version_info >= (3, 11):
    from typing import Self
else:
    from typing_extensions import Self

T = TypeVar("T")


class InveterateClient:
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

    __slots__ = (
        "_base_url",
        "_deadline",
        "_extra_headers",
        "_policy",
        "_redactor",
        "_sleep",
        "_transport",
    )

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
        check_max_retries(max_retries)
        if not is_number(backoff_base) or not backoff_base >= 0:
            raise ValueError(f"backoff_base must be a number >= 0, got {backoff_base!r}")
        check_positive_int("max_connections", max_connections)
        check_positive_int("max_response_bytes", max_response_bytes)
        self._deadline = check_deadline(deadline)
        self._redactor = Redactor(key)
        self._policy = RetryPolicy(max_retries=max_retries, backoff_base=float(backoff_base))
        self._sleep = sleep
        self._extra_headers: dict[str, str] = {}
        self._transport = AiohttpTransport(
            headers=request_headers(key),
            session=session,
            timeout=client_timeout(timeout),
            max_connections=max_connections,
            max_response_bytes=max_response_bytes,
        )

    def __repr__(self) -> str:
        return f"InveterateClient(base_url={self._base_url!r}, api_key='[redacted]')"

    @property
    def base_url(self) -> str:
        """The API root every request goes to."""
        return self._base_url

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
        await self._transport.aclose()

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
        derived._transport = self._transport.with_timeout(
            self._transport.timeout if timeout is None else client_timeout(timeout)
        )
        if max_retries is not None:
            check_max_retries(max_retries)
            derived._policy = attrs.evolve(self._policy, max_retries=max_retries)
        if deadline is not UNSET:
            derived._deadline = check_deadline(deadline)
        if headers is not None:
            derived._extra_headers = {**self._extra_headers, **check_extra_headers(headers)}
        return derived

    async def _call(
        self,
        request: PreparedRequest,
        read: Callable[[Response], T],
        deadline: float | Unset | None,
    ) -> T:
        """Send, read, and pass any error through the one choke point."""
        return self._read(read, request, await self._send(request, deadline))

    async def _send(self, request: PreparedRequest, deadline: float | Unset | None) -> Response:
        """Send with retries; the response's headers scrubbed, errors given their context."""
        if self._extra_headers:
            request = attrs.evolve(request, headers={**self._extra_headers, **request.headers})
        try:
            response = await send_with_retries(
                self._transport,
                request,
                policy=self._policy,
                sleep=self._sleep,
                deadline=self._deadline if deadline is UNSET else check_deadline(deadline),
                redactor=self._redactor,
            )
        except InveterateError as error:
            add_request_context(error, request, None, self._redactor)
            raise
        headers = self._redactor.headers(response.headers)
        if headers is not response.headers:
            response = attrs.evolve(response, headers=headers)
        return response

    def _read(
        self, read: Callable[[Response], T], request: PreparedRequest, response: Response
    ) -> T:
        """``read(response)``, its errors given the request's context."""
        try:
            return read(response)
        except InveterateError as error:
            add_request_context(error, request, response, self._redactor)
            raise

    def _scrub(self, error: InveterateError) -> None:
        add_request_context(error, None, None, self._redactor)

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
        return await self._call(request, read_credits_page, deadline)

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
        # Checked in the order of the arguments, before anything is sent.
        encode_customer_id(customer_id)
        if page_size is not None:
            check_positive_int("page_size", page_size)
        first = start_cursor(cursor_text(cursor), start)
        # Encoded once per ledger; each page only adds its cursor.
        page_url = credits_page_url(self._base_url, customer_id, page_size)
        if isinstance(first, LedgerPosition):  # finished: nothing left to read
            return no_pages()
        return iter_pages(partial(fetch_page, page_url), customer_id, first, self._scrub)

    async def _fetch_page(self, page_url: str, cursor: str | None) -> CreditPage:
        return await self._call(credits_page_request(page_url, cursor), read_credits_page, UNSET)

    async def _fetch_unread_page(
        self, hand_over: HandOver, page_url: str, cursor: str | None
    ) -> PageRead:
        # Read by the fan-out's consumer just before it delivers the credits, or by the
        # worker at once if the consumer is busy in the caller's loop (see _fanout).
        request = credits_page_request(page_url, cursor)
        response = await self._send(request, UNSET)
        return await hand_over(partial(self._read, read_credits_page, request, response))

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
        position instead. Each member's credits arrive in ledger order (members
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
        self._transport.reserve_connections(concurrency)
        return CreditStream(
            lambda customer_id, start, hand_over: self._pages(
                partial(self._fetch_unread_page, hand_over), customer_id, page_size, None, start
            ),
            customer_ids,
            concurrency=concurrency,
            on_error=on_error,
            abort_after=abort_after,
        )

    async def create_credit(
        self,
        customer_id: CustomerId,
        amount: int | Decimal | str,
        *,
        note: str | None = None,
        force: bool | None = None,
        deadline: float | Unset | None = UNSET,
    ) -> CreditResult:
        """Add (positive ``amount``) or remove (negative) store credit for a member.

        :param amount: a ``Decimal``, a decimal ``str`` or an ``int``, sent with its
            exact digits; a ``float`` is refused (``0.1 + 0.2`` is not 0.3).
        :param note: a note stored with the credit.
        :param force: with a negative amount, disable active credit redemption codes.
        :param deadline: seconds for this call, overriding the client's.
        :raises InveterateError: never retried once it may have reached the server: when
            ``outcome_unknown`` is set, check the ledger before trying again.
        """
        request = create_credit_request(self._base_url, customer_id, amount, note=note, force=force)
        return await self._call(request, read_credit_result, deadline)

    async def apply_credits(
        self,
        adjustments: Iterable[CreditAdjustment],
        journal: str | os.PathLike[str] | Journal,
        *,
        concurrency: int = 8,
        tag_notes: bool = True,
        check_ledger_first: bool | None = None,
        settle: float = 300.0,
        clock_skew: float = 120.0,
        poll_interval: float | None = None,
        resend_unconfirmed: bool = False,
        max_decimal_places: int | None = None,
        dry_run: bool = False,
        on_progress: Callable[[AdjustmentRow], object] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> AdjustmentReport:
        """Apply a batch of adjustments exactly once, through a SQLite journal.

        The member's ledger is the truth: each note carries its ref's tag, a member's
        ledger is read before its first send (a ref already there is recorded applied,
        not sent), and every uncertain outcome is looked up there. Re-running with the
        same journal resumes; a lost or second journal applies nothing twice once the
        earlier writes are visible. See docs/bulk.md for the guarantees and their limits.

        :param adjustments: the batch, any iterable (a generator over a large file is
            read a chunk at a time); every ``ref`` once.
        :param journal: the journal file (created if missing), or a :class:`Journal`.
        :param concurrency: members worked on, and so requests, at the same time.
        :param tag_notes: append ``" [ref:REF]"`` to each note, so that the ledger says
            which adjustment made each entry. ``False`` matches entries by amount, note
            and time instead: a weaker guarantee (docs/bulk.md).
        :param check_ledger_first: read a member's ledger before its first send (default:
            with ``tag_notes``); ``False`` for a batch you know is new saves one read per
            member. Needs ``tag_notes``.
        :param settle: seconds after a send within which its credit must show in the
            ledger; a row of unknown outcome unseen in two reads, the last after that
            (on ``clock``), is "not applied".
        :param clock_skew: without tags, seconds an entry's ``createdAt`` may precede
            the send.
        :param poll_interval: seconds between ledger reads while waiting (default:
            ``settle / 10``, at most 10).
        :param resend_unconfirmed: re-send rows found not applied (once per run).
        :param max_decimal_places: refuse (ValueError, nothing sent) an amount with more
            decimal places, e.g. ``2`` to catch ``5.005`` typos (None: any).
        :param dry_run: write and send nothing; the report's ``to_send`` is what would be
            sent, and ``on_progress`` is called with each such row.
        :param on_progress: called with each row whenever its state changes.
        :param clock: the monotonic clock of settle windows (tests pass a
            ``ManualClock``); waits use the client's ``sleep``.
        :returns: counts and sums per state over the whole journal, and the first rows
            that are not applied.
        :raises ValueError: for a bad argument or item, or a ref given twice; nothing
            is sent.
        :raises JournalConflictError: a ref is in the journal with other content.
        :raises JournalLockedError: another process is applying from the journal.
        :raises JournalWriteError: the journal could not be written after POSTs went
            out (a full disk): run again once the cause is fixed.
        :raises AuthenticationError: (or another error whose ``is_auth_error`` is
            True) the API refused the key; the run stopped, unsent rows stay pending,
            and a re-run with the right key finishes the batch.
        :raises InveterateError: the key check failed (wrong URL); the journal is
            consistent and a re-run resumes.
        """
        options = BulkOptions.checked(
            concurrency=concurrency,
            tag_notes=tag_notes,
            check_ledger_first=check_ledger_first,
            settle=settle,
            clock_skew=clock_skew,
            poll_interval=poll_interval,
            resend_unconfirmed=resend_unconfirmed,
            max_decimal_places=max_decimal_places,
            on_progress=on_progress,
            clock=clock,
            sleep=self._sleep,
        )
        self._transport.reserve_connections(concurrency)
        return await run_batch(self, adjustments, journal, options, dry_run=dry_run)
