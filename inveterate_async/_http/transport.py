"""The aiohttp transport: one request in, one response out, nothing else.

Retries, deadlines and logging sit on top of it (``_sending``); building requests and
reading responses sit beside it (``_request``, ``_response``). The only errors it
raises are :class:`APIConnectionError` and :class:`APITimeoutError` (no HTTP answer),
and :class:`RuntimeError` for a client used after closing or from another loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Protocol

import aiohttp

from .._errors import APIConnectionError, APITimeoutError
from .._exchange import PreparedRequest, Response

DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_CONNECTIONS = 100

_WRONG_LOOP = (
    "this InveterateClient is bound to the event loop it was first used in, and is now "
    "used from another one: create one client per event loop (e.g. inside the async "
    "function that asyncio.run runs, or in a per-test fixture)"
)


class Transport(Protocol):
    """What the client needs from a transport."""

    @property
    def closed(self) -> bool:
        """Whether :meth:`aclose` was called."""

    async def send(self, request: PreparedRequest) -> Response:
        """Send ``request`` once and return the whole response."""

    async def aclose(self) -> None:
        """Release the connections; idempotent."""


class _Pool:
    """The session shared by a client and the clients derived from it with ``with_options``."""

    __slots__ = ("closed", "headers", "loop", "max_connections", "owned", "session", "timeout")

    def __init__(
        self,
        session: aiohttp.ClientSession | None,
        headers: dict[str, str],
        timeout: aiohttp.ClientTimeout,
        max_connections: int,
    ) -> None:
        self.session = session
        self.owned = session is None
        self.headers = headers
        self.timeout = timeout
        self.max_connections = max_connections
        self.loop: asyncio.AbstractEventLoop | None = None
        self.closed = False

    def session_for(self, loop: asyncio.AbstractEventLoop) -> aiohttp.ClientSession:
        if self.loop is not loop:
            if self.loop is not None:
                raise RuntimeError(_WRONG_LOOP)
            self.loop = loop
        if self.closed:
            raise RuntimeError("the InveterateClient is closed")
        session = self.session
        if session is None:
            # Created lazily: a ClientSession must be made inside a running loop.
            session = self.session = aiohttp.ClientSession(
                headers=self.headers,
                timeout=self.timeout,
                cookie_jar=aiohttp.DummyCookieJar(),
                connector=aiohttp.TCPConnector(limit=self.max_connections),
            )
        elif session.closed:
            raise RuntimeError("the aiohttp session lent to this InveterateClient is closed")
        return session


class AiohttpTransport:
    """Sends requests over an own or a borrowed :class:`aiohttp.ClientSession`.

    Every setting the SDK depends on is passed with each request (no redirects, no
    raising on status, the SDK's headers and timeout), so a lent session's defaults
    cannot change its behaviour; its connector, proxies and tracing are still used.
    """

    __slots__ = ("_max_response_bytes", "_options", "_owner", "_pool")

    def __init__(
        self,
        *,
        headers: Mapping[str, str],
        session: aiohttp.ClientSession | None,
        timeout: aiohttp.ClientTimeout,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        headers = dict(headers)
        if session is not None and not session.auto_decompress:
            headers["Accept-Encoding"] = "identity"
        self._pool = _Pool(session, headers, timeout, max_connections)
        self._owner = True
        self._max_response_bytes = max_response_bytes
        self._options: dict[str, Any] = {"allow_redirects": False, "raise_for_status": False}
        if session is not None:
            # A lent session gets the timeout with each request; an own one has it set once.
            self._options["timeout"] = timeout

    def with_timeout(self, timeout: aiohttp.ClientTimeout) -> AiohttpTransport:
        """A transport on the same session whose requests use ``timeout``; closing it
        leaves the session to this one."""
        derived: AiohttpTransport = object.__new__(AiohttpTransport)
        derived._pool = self._pool
        derived._owner = False
        derived._max_response_bytes = self._max_response_bytes
        derived._options = {**self._options, "timeout": timeout}
        return derived

    @property
    def timeout(self) -> aiohttp.ClientTimeout:
        """The timeout of one attempt."""
        timeout: aiohttp.ClientTimeout = self._options.get("timeout", self._pool.timeout)
        return timeout

    @property
    def closed(self) -> bool:
        """Whether the session was closed through :meth:`aclose`."""
        return self._pool.closed

    def reserve_connections(self, count: int) -> None:
        """Make the own session's pool allow ``count`` connections at once.

        :raises ValueError: if the pool was already made smaller than that.
        """
        pool = self._pool
        if not pool.owned or count <= pool.max_connections:
            return
        if pool.session is not None:
            raise ValueError(
                f"concurrency={count} exceeds the client's max_connections="
                f"{pool.max_connections}: pass InveterateClient(max_connections={count})"
            )
        pool.max_connections = count

    async def aclose(self) -> None:
        """Close the session if this transport created it; a borrowed one is left open.

        A transport made by :meth:`with_timeout` leaves the session open.
        """
        pool = self._pool
        if not self._owner:
            return
        pool.closed = True
        if pool.owned and pool.session is not None:
            await pool.session.close()

    async def send(self, request: PreparedRequest) -> Response:
        """Send ``request`` once and return the whole response (body capped).

        :raises APIConnectionError: no HTTP answer was received (``APITimeoutError``
            for a timeout); ``outcome_unknown`` is set for a write that may have left.
        """
        pool = self._pool
        session = pool.session_for(asyncio.get_running_loop())
        headers: Mapping[str, str] | None = request.headers or None
        if not pool.owned:
            headers = {**pool.headers, **request.headers}
        try:
            async with session.request(
                request.method, request.url, headers=headers, data=request.body, **self._options
            ) as resp:
                body, truncated = await self._read_body(resp)
                return Response(resp.status, resp.reason or "", resp.headers, body, truncated)
        except (asyncio.TimeoutError, aiohttp.ClientError) as exc:
            raise self._failure(request, exc) from exc

    async def _read_body(self, resp: aiohttp.ClientResponse) -> tuple[bytes, bool]:
        cap = self._max_response_bytes
        length = resp.content_length
        if length is not None and "Content-Encoding" not in resp.headers:
            if length > cap:
                return b"", True
            return await resp.read(), False
        # Unknown or compressed length: read in chunks, stopping past the cap.
        chunks: list[bytes] = []
        size = 0
        while chunk := await resp.content.readany():
            size += len(chunk)
            if size > cap:
                return b"".join(chunks), True
            chunks.append(chunk)
        return b"".join(chunks), False

    def _failure(self, request: PreparedRequest, exc: BaseException) -> APIConnectionError:
        timed_out = isinstance(exc, asyncio.TimeoutError)
        # These two are raised before any byte of the request was written.
        sent = not isinstance(exc, (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError))
        if self._pool.closed:
            detail = "the client was closed while the request was in flight"
            timed_out = False
        elif timed_out:
            detail = f"no answer within the attempt timeout ({_limits(self.timeout)})"
        else:
            detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        error_class = APITimeoutError if timed_out else APIConnectionError
        return error_class(
            detail,
            method=request.method,
            url=request.display_url,
            outcome_unknown=sent and not request.replayable,
        )


def _limits(timeout: aiohttp.ClientTimeout) -> str:
    """The limits of an ``aiohttp.ClientTimeout``, e.g. ``total 30 s``."""
    names = ("total", "connect", "sock_connect", "sock_read")
    given = [f"{name} {value:g} s" for name in names if (value := getattr(timeout, name))]
    return ", ".join(given) or "none"
