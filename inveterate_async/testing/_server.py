"""The :class:`Sandbox` server: its lifecycle, the user-facing methods and request handling."""

import asyncio
import sys
from collections.abc import Mapping
from datetime import datetime, timezone
from types import TracebackType

from aiohttp import web

if sys.version_info >= (3, 11):
    from typing import Self
else:
    from typing_extensions import Self

from ._ledger import (
    NewCredit,
    credit_from_dto,
)
from ._state import SandboxState
from ._thread import ThreadedSandbox
from ._wire import (
    BadRequest,
    RecordedRequest,
    decode_json,
    json_response,
    parse_limit,
    record_request,
)

_API_KEY_HEADER = "X-Inveterate-Api-Key"


class Sandbox(SandboxState):
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

    def start_in_thread(self) -> ThreadedSandbox:
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
