"""A blocking client, for synchronous code (Django, Flask, scripts, cron jobs).

:class:`InveterateClient` here has the methods, arguments, results and exceptions of
:class:`inveterate_async.InveterateClient`, blocking: it runs an async client on a private
event loop in a daemon thread of its own (one per blocking client), so one client serves
any number of threads with one connection pool::

    from inveterate_async.sync import InveterateClient

    client = InveterateClient()  # once per process, e.g. at import
    for credit in client.iter_credits("42"):
        print(credit.amount)
    client.close()  # or use it as a context manager

Layer: above the facade and the jobs (it wraps ``_client``); nothing imports it but users.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Generator, Iterable, Mapping
from decimal import Decimal
from types import TracebackType

import aiohttp

from .._bulk import AdjustmentReport, AdjustmentRow, CreditAdjustment, Journal
from .._client import InveterateClient as AsyncClient
from .._config import UNSET, Unset
from .._http.transport import DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_RESPONSE_BYTES
from .._models import Credit, CreditPage, CreditResult, LedgerPosition
from .._streaming.failfast import DEFAULT_ABORT_AFTER
from .._streaming.fanout import OnError
from .._streaming.members import CustomerId, Members
from ._loop import LoopThread
from ._stream import CreditStream

__all__ = ["CreditStream", "InveterateClient"]


class InveterateClient:
    """Blocking client for the credits endpoints; see :class:`inveterate_async.InveterateClient`
    for every method and parameter (``session`` and ``sleep`` belong to an event loop and are
    not taken).

    Safe to use from many threads at once. Ctrl-C in a calling thread cancels its request
    in flight. Leaving an iterator early (``break``) closes it. ``on_progress`` of
    :meth:`apply_credits` is called on the client's own thread. :meth:`close` (or the
    ``with`` block) closes the connections and ends the thread.

    :raises ValueError: for a missing key or any invalid setting.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float | aiohttp.ClientTimeout = 30.0,
        deadline: float | None = None,
        max_retries: int = 2,
        backoff_base: float = 0.5,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        allow_insecure_http: bool | None = None,
    ) -> None:
        self._loop = LoopThread("inveterate-sync-client")
        self._owner = True

        async def make() -> AsyncClient:
            return AsyncClient(
                api_key,
                base_url=base_url,
                timeout=timeout,
                deadline=deadline,
                max_retries=max_retries,
                backoff_base=backoff_base,
                max_connections=max_connections,
                max_response_bytes=max_response_bytes,
                allow_insecure_http=allow_insecure_http,
            )

        try:
            self._client = self._loop.run(make)
        except BaseException:
            self._loop.stop()
            raise

    @classmethod
    def _derived(cls, client: AsyncClient, loop: LoopThread) -> InveterateClient:
        derived = cls.__new__(cls)
        derived._client, derived._loop, derived._owner = client, loop, False
        return derived

    def __repr__(self) -> str:
        return f"inveterate_async.sync.InveterateClient(base_url={self.base_url!r})"

    @property
    def base_url(self) -> str:
        """The API root every request goes to."""
        return self._client.base_url

    def close(self) -> None:
        """Close the connections and end the client's thread (a client made by
        :meth:`with_options` leaves both to the one it came from). Idempotent."""
        if self._owner and self._loop.running:
            try:
                self._loop.run(self._client.aclose)
            finally:
                self._loop.stop()

    def __enter__(self) -> InveterateClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def with_options(
        self,
        *,
        timeout: float | aiohttp.ClientTimeout | None = None,
        max_retries: int | None = None,
        deadline: float | Unset | None = UNSET,
        headers: Mapping[str, str] | None = None,
    ) -> InveterateClient:
        """A client with other settings on the same connections and thread."""
        derived = self._client.with_options(
            timeout=timeout, max_retries=max_retries, deadline=deadline, headers=headers
        )
        return self._derived(derived, self._loop)

    def get_credits_page(
        self,
        customer_id: CustomerId,
        *,
        limit: int | None = None,
        cursor: str | None = None,
        deadline: float | Unset | None = UNSET,
    ) -> CreditPage:
        """Fetch one page of a member's credit ledger."""
        return self._loop.run(
            lambda: self._client.get_credits_page(
                customer_id, limit=limit, cursor=cursor, deadline=deadline
            )
        )

    def iter_credit_pages(
        self,
        customer_id: CustomerId,
        *,
        page_size: int | None = None,
        cursor: str | None = None,
        start: LedgerPosition | None = None,
    ) -> Generator[CreditPage, None, None]:
        """Yield a member's ledger page by page (arguments are checked at the call)."""
        pages = self._client.iter_credit_pages(
            customer_id, page_size=page_size, cursor=cursor, start=start
        )
        return self._loop.iterate(pages)

    def iter_credits(
        self,
        customer_id: CustomerId,
        *,
        page_size: int | None = None,
        cursor: str | None = None,
        start: LedgerPosition | None = None,
    ) -> Generator[Credit, None, None]:
        """Yield every credit of a member's ledger (arguments are checked at the call)."""
        credits = self._client.iter_credits(
            customer_id, page_size=page_size, cursor=cursor, start=start
        )
        return self._loop.iterate(credits)

    def iter_credits_many(
        self,
        customer_ids: Members,
        *,
        concurrency: int = 8,
        page_size: int | None = None,
        on_error: OnError = "raise",
        abort_after: int | None = DEFAULT_ABORT_AFTER,
    ) -> CreditStream:
        """Stream ``(customer_id, credit)`` for many members, ``concurrency`` at a time."""
        stream = self._client.iter_credits_many(
            customer_ids,
            concurrency=concurrency,
            page_size=page_size,
            on_error=on_error,
            abort_after=abort_after,
        )
        return CreditStream(stream, self._loop)

    def create_credit(
        self,
        customer_id: CustomerId,
        amount: int | Decimal | str,
        *,
        note: str | None = None,
        force: bool | None = None,
        deadline: float | Unset | None = UNSET,
    ) -> CreditResult:
        """Add (positive ``amount``) or remove (negative) store credit for a member."""
        return self._loop.run(
            lambda: self._client.create_credit(
                customer_id, amount, note=note, force=force, deadline=deadline
            )
        )

    def apply_credits(
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
        """Apply a batch of adjustments exactly once, through a SQLite journal."""
        return self._loop.run(
            lambda: self._client.apply_credits(
                adjustments,
                journal,
                concurrency=concurrency,
                tag_notes=tag_notes,
                check_ledger_first=check_ledger_first,
                settle=settle,
                clock_skew=clock_skew,
                poll_interval=poll_interval,
                resend_unconfirmed=resend_unconfirmed,
                max_decimal_places=max_decimal_places,
                dry_run=dry_run,
                on_progress=on_progress,
                clock=clock,
            )
        )
