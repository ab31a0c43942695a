"""The :class:`Sandbox` server: its lifecycle, the user-facing methods and request handling."""

import asyncio
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from decimal import Decimal
from types import TracebackType
from typing import TYPE_CHECKING, Any

from aiohttp import web

if sys.version_info >= (3, 11):
    from typing import Self
else:
    from typing_extensions import Self

from ._faults import Faults
from ._ledger import (
    CursorFactory,
    Ledgers,
    NewCredit,
    credit_from_dto,
    credit_from_user,
    member_key,
)
from ._random_faults import RandomFaults
from ._wire import (
    BadRequest,
    RecordedRequest,
    decode_json,
    json_response,
    parse_limit,
    record_request,
)
from ._write_faults import RandomWriteFaults

if TYPE_CHECKING:
    from ._thread import ThreadedSandbox

_API_KEY_HEADER = "X-Inveterate-Api-Key"


class Sandbox:
    """A fake Inveterate API server on localhost for testing code that uses the SDK.

    Serves ``GET`` and ``POST /v2.0/admin/members/{id}/credits`` from in-memory ledgers,
    checks the ``X-Inveterate-Api-Key`` header against ``api_key``, paginates with opaque
    ``lastCreditEntry`` cursors and records every request in :attr:`requests`. The member id
    must arrive as one percent-encoded path segment (``"a/b"`` as ``a%2Fb``, ``".."`` as
    ``%2E%2E``); other paths get 404 and other methods 405.

    Example::

        async with Sandbox(api_key="test-key") as sandbox:
            sandbox.add_credits("42", ["10.00", "-2.50"])
            async with InveterateClient("test-key", base_url=sandbox.base_url) as client:
                ...

    :param api_key: the only key accepted; anything else is answered with 400.
    :param host: the interface to bind; only localhost by default.
    :param port: the TCP port; 0 picks a free one.
    :param default_limit: the page size when a GET has no ``limit``.
    :param cursor_factory: ``(customer_id, entry) -> cursor`` replacing the default cursor.
        A ``str`` is sent as a JSON string and must come back verbatim; a mapping of
        JSON-native values is sent as a JSON object and must come back as its compact
        ``json.dumps(obj, separators=(",", ":"))`` text.
    :param latency: seconds every request waits (while counted in :attr:`in_flight`).
    :param clock: the time in seconds since the epoch (``time.time``; a
        :class:`ManualClock` makes time-based behaviour deterministic). A POSTed credit's
        ``createdAt`` is the clock's reading; seeded and added credits keep their fixed
        history (2024-03-01 onwards, a minute apart).
    :param visibility_delay: seconds of ``clock`` after a POST before its credit appears
        in GET results, like the real API's asynchronous writes. The credit is applied at
        once (balance, :meth:`ledger`); only reads wait. Changeable between requests.
    :param record_requests: keep every request in :attr:`requests` (turn it off for a
        long-running server: the list would grow without bound).
    :param members_exist: ``(customer_id) -> bool``, whether a member exists; a GET or POST
        for one that does not is answered 404 ``{"message": "Customer not found", "data":
        {}}`` (after the key is checked) and nothing is applied. None (the default): every
        member exists, an unknown one with an empty ledger. It gets the decoded id as a
        ``str``; :meth:`add_credits`, :meth:`ledger` and :meth:`balance` ignore it.
        Changeable between requests.
    :raises ValueError: if ``default_limit`` is below 1, or ``latency`` or
        ``visibility_delay`` is negative.

    :ivar requests: every :class:`RecordedRequest` received, in arrival order (empty
        when ``record_requests`` is off).
    :ivar in_flight: the number of requests being handled right now.
    :ivar max_in_flight: the highest :attr:`in_flight` seen since the start or
        :meth:`reset_stats`.
    """

    def __init__(
        self,
        api_key: str = "test-key",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        default_limit: int = 50,
        cursor_factory: CursorFactory | None = None,
        latency: float = 0.0,
        clock: Callable[[], float] = time.time,
        visibility_delay: float = 0.0,
        record_requests: bool = True,
        members_exist: Callable[[str], bool] | None = None,
    ) -> None:
        if default_limit < 1:
            raise ValueError("default_limit must be at least 1")
        if latency < 0:
            raise ValueError("latency must not be negative")
        if visibility_delay < 0:
            raise ValueError("visibility_delay must not be negative")
        self.api_key = api_key
        self.default_limit = default_limit
        self.cursor_factory = cursor_factory
        self.latency = latency
        self.clock = clock
        self.visibility_delay = visibility_delay
        self.record_requests = record_requests
        self.members_exist = members_exist
        self.requests: list[RecordedRequest] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._host = host
        self._requested_port = port
        self._port: int | None = None
        self._runner: web.ServerRunner | None = None
        self._ledgers = Ledgers()
        self._faults = Faults()
        self._random_faults = RandomFaults()
        self._write_faults = RandomWriteFaults()

    async def start(self) -> Self:
        """Start serving.

        :returns: ``self``.
        :raises RuntimeError: if it is already started.
        :raises OSError: if the address cannot be bound.
        """
        if self._runner is not None:
            raise RuntimeError("Sandbox is already started")
        # A short grace period: requests still waiting out `latency` are cancelled on close.
        runner = web.ServerRunner(web.Server(self._handle, access_log=None), shutdown_timeout=0.1)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self._requested_port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._port = int(runner.addresses[0][1])
        self._runner = runner
        return self

    def start_in_thread(self) -> "ThreadedSandbox":
        """Start serving from an event loop of its own, in a daemon thread.

        For synchronous tests, and for code under test that runs its own event loop
        (FastAPI's ``TestClient``, Django, ``requests``): a sandbox started in the test's
        own loop is never served while that loop waits for the app. Use the returned
        handle (thread-safe) to seed and inspect the sandbox, and close it when done::

            with Sandbox(api_key="test-key").start_in_thread() as sandbox:
                sandbox.add_credits("42", ["10.00"])

        :returns: the running :class:`ThreadedSandbox`.
        :raises RuntimeError: if it is already started.
        :raises OSError: if the address cannot be bound.
        """
        from ._thread import ThreadedSandbox  # here: _thread imports this module

        return ThreadedSandbox(self).start()

    async def close(self) -> None:
        """Stop serving and close all connections; safe to call more than once."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def port(self) -> int:
        """The bound TCP port.

        :raises RuntimeError: if the sandbox was never started.
        """
        if self._port is None:
            raise RuntimeError("Sandbox is not started")
        return self._port

    @property
    def base_url(self) -> str:
        """The API root to give the client, e.g. ``http://127.0.0.1:54321/v2.0``.

        :raises RuntimeError: if the sandbox was never started.
        """
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}/v2.0"

    def reset_stats(self) -> None:
        """Forget recorded requests and restart the :attr:`max_in_flight` high-water mark."""
        self.requests.clear()
        self.max_in_flight = self.in_flight

    def add_credits(
        self,
        customer_id: str | int,
        entries: Iterable[Decimal | str | int | Mapping[str, Any]],
    ) -> list[dict[str, Any]]:
        """Append entries to a member's ledger; nothing is added if any entry is invalid.

        :param customer_id: the member.
        :param entries: amounts (``Decimal``, ``int`` or decimal ``str``; floats are refused
            as inexact) or mappings with ``amount`` and optional ``note``, ``reason`` (default
            ``"manual adjustment"``) and ``createdAt``. Amounts must be non-zero.
        :returns: copies of the created entries.
        :raises TypeError: for a single credit instead of an iterable, or a wrong type.
        :raises ValueError: for an invalid amount or key, or a balance out of range.
        """
        if isinstance(entries, (str, bytes, Mapping)):
            raise TypeError("entries must be an iterable of credits, not a single credit")
        member = member_key(customer_id)
        credits = [credit_from_user(entry) for entry in entries]
        return [dict(entry) for entry in self._ledgers.append(member, credits)]

    def ledger(self, customer_id: str | int) -> list[dict[str, Any]]:
        """Copies of a member's entries, oldest first (empty for an unknown member).

        Credits still hidden by ``visibility_delay`` are included: this is what the
        server holds, not what a GET shows.
        """
        return self._ledgers.entries(member_key(customer_id))

    def balance(self, customer_id: str | int) -> Decimal:
        """A member's current balance (0 for an unknown member)."""
        return self._ledgers.balance(member_key(customer_id))

    def fail_next(
        self,
        status: int = 500,
        times: int = 1,
        retry_after: float | str | None = None,
        body: bytes | str | Mapping[str, Any] | None = None,
        *,
        method: str | None = None,
        customer_id: str | int | None = None,
        apply: bool = False,
        disconnect: bool = False,
        delay: float = 0.0,
        match: Callable[[RecordedRequest], bool] | None = None,
    ) -> None:
        """Answer the next ``times`` matching requests with an injected fault.

        Faults queue up in call order. Note that aiohttp's client silently retries an
        idempotent request (GET) once after a disconnect, so a GET needs ``times=2``.

        :param status: the status to answer, 200-599.
        :param times: how many matching requests get the fault.
        :param retry_after: the value of a ``Retry-After`` header, if given.
        :param body: the body; by default a JSON ``{message, data}``. A mapping is sent as
            JSON, ``str`` or ``bytes`` as text/plain.
        :param method: only requests with this method match (None: any).
        :param customer_id: only requests for this member match (None: any).
        :param apply: process the request first (a POST is written), then replace its
            response by the fault.
        :param disconnect: close the connection without an answer.
        :param delay: real seconds to wait (after applying, with ``apply``) before
            answering or disconnecting: a client timeout shorter than this times out.
        :param match: only requests for which it returns True match, e.g.
            ``lambda request: b"gold-42" in request.body``.
        :raises ValueError: if ``status``, ``times`` or ``delay`` is out of range.
        """
        self._faults.add(
            status,
            times,
            retry_after,
            body,
            method=method,
            customer_id=customer_id,
            apply=apply,
            disconnect=disconnect,
            delay=delay,
            match=match,
        )

    def fail_randomly(self, rate: float, *, seed: int = 0, status: int = 503) -> None:
        """Answer each ledger read (GET) with a transient ``status`` with probability ``rate``.

        Seeded: the same requests in the same order fail the same way. Faults queued with
        :meth:`fail_next` come first. Writes are never failed this way (see
        :meth:`fail_writes_randomly`).

        :param rate: from 0 (never; the default) to 1 (always).
        :param seed: the seed of the draws.
        :param status: the status to answer, 500-599.
        :raises ValueError: if ``rate`` or ``status`` is out of range.
        """
        self._random_faults.configure(rate, seed=seed, status=status)

    def fail_writes_randomly(
        self, *, before: float = 0.0, after: float = 0.0, dropped: float = 0.0, seed: int = 0
    ) -> None:
        """Fail shares of the ledger writes (POSTs) in each of the ways a write can fail.

        Each POST draws once from ``random.Random(seed)``: the same POSTs in the same order
        fail the same way. Faults queued with :meth:`fail_next` come first (and draw
        nothing). Each call starts the draws afresh; all shares 0 stops failing.

        :param before: the share (0 to 1) answered 500 without applying the credit.
        :param after: the share applied, then answered 500.
        :param dropped: the share applied, then left without an answer (the connection
            is closed).
        :param seed: the seed of the draws.
        :raises ValueError: if a share is not a number from 0 to 1, or they sum above 1.
        """
        self._write_faults.configure(before=before, after=after, dropped=dropped, seed=seed)

    def seed_members(
        self, count: int, *, credits_per_member: int = 5, seed: int = 0, prefix: str = ""
    ) -> list[str]:
        """Create members with realistic ledgers, the same for the same ``seed``.

        :param count: how many members: ``f"{prefix}1"``, ``f"{prefix}2"``, ...
        :param credits_per_member: the entries added to each member's ledger.
        :param seed: the random seed.
        :param prefix: put before each member number.
        :returns: the member ids.
        """
        return self._ledgers.seed_members(
            count, credits_per_member=credits_per_member, seed=seed, prefix=prefix
        )

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            recorded = record_request(request, await request.read())
            if self.record_requests:
                self.requests.append(recorded)
            # Taken on arrival so that concurrent requests get faults in arrival order.
            fault = self._faults.take(recorded)
            if fault is None:
                fault = self._write_faults.take(recorded)
            random_failure = fault is None and self._random_faults.hit(recorded)
            if self.latency > 0:
                await asyncio.sleep(self.latency)
            if random_failure:
                status = self._random_faults.status
                return json_response(status, f"Injected transient failure (HTTP {status})", {})
            if fault is None:
                return self._dispatch(recorded)
            if fault.apply:
                # Only the side effect is wanted: the fault replaces the answer.
                self._dispatch(recorded)
            if fault.delay > 0:
                await asyncio.sleep(fault.delay)
            if fault.disconnect and request.transport is not None:
                # aiohttp treats the failed write of the response as a client disconnect.
                request.transport.close()
            return web.Response(status=fault.status, body=fault.body, headers=fault.headers)
        finally:
            self.in_flight -= 1

    def _dispatch(self, request: RecordedRequest) -> web.Response:
        if request.customer_id is None:
            return json_response(404, "Not found", {})
        if request.method not in ("GET", "POST"):
            return json_response(405, "Method not allowed", {}, {"Allow": "GET, POST"})
        if request.headers.get(_API_KEY_HEADER) != self.api_key:
            return json_response(400, "Invalid API key", {})
        if self.members_exist is not None and not self.members_exist(request.customer_id):
            return json_response(404, "Customer not found", {})
        try:
            if request.method == "GET":
                return self._get_credits(request.customer_id, request.query)
            return self._create_credit(request.customer_id, request)
        except BadRequest as exc:
            return json_response(400, str(exc), {})

    def _get_credits(self, member: str, query: Mapping[str, list[str]]) -> web.Response:
        for name, values in query.items():
            if len(values) > 1:
                raise BadRequest(f"Query parameter {name} is repeated")
        limit = parse_limit(query["limit"][0]) if "limit" in query else self.default_limit
        after = query["lastCreditEntry"][0] if "lastCreditEntry" in query else None
        page, cursor = self._ledgers.page(member, after, limit, self.cursor_factory, self.clock())
        return json_response(200, "Credits retrieved", {"credits": page, "lastCreditEntry": cursor})

    def _create_credit(self, member: str, request: RecordedRequest) -> web.Response:
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise BadRequest("Content-Type must be application/json")
        amount, note = credit_from_dto(decode_json(request.body))
        now = self.clock()
        created_at = datetime.fromtimestamp(now, timezone.utc).isoformat(timespec="milliseconds")
        credit = NewCredit(amount, "api", note, created_at.replace("+00:00", "Z"))
        visible_at = now + self.visibility_delay if self.visibility_delay > 0 else None
        try:
            (entry,) = self._ledgers.append(member, [credit], visible_at=visible_at)
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        return json_response(201, "Credit created", entry)
