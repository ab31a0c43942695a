"""Sending prepared requests over aiohttp, with retries and per-attempt logging."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp

from ._errors import APIConnectionError, APITimeoutError
from ._redact import Redactor
from ._request import PreparedRequest
from ._response import Response
from ._retry import RetryPolicy, may_retry_failure, may_retry_status

logger = logging.getLogger("inveterate_async")

Sleep = Callable[[float], Awaitable[None]]


class Transport:
    """Owns (or borrows) the aiohttp session and runs each request's attempts."""

    __slots__ = (
        "_closed",
        "_get_options",
        "_headers",
        "_owns_session",
        "_policy",
        "_post_options",
        "_redactor",
        "_session",
        "_sleep",
        "_timeout",
    )

    def __init__(
        self,
        *,
        headers: Mapping[str, str],
        session: aiohttp.ClientSession | None,
        timeout: aiohttp.ClientTimeout,
        policy: RetryPolicy,
        sleep: Sleep,
        redactor: Redactor,
    ) -> None:
        self._headers = dict(headers)
        self._session = session
        self._owns_session = session is None
        self._timeout = timeout
        # An owned session carries the headers and timeout itself, set once; a
        # borrowed one gets them on every request and keeps its own defaults.
        per_request: dict[str, Any] = (
            {} if self._owns_session else {"headers": self._headers, "timeout": timeout}
        )
        self._get_options = per_request
        self._post_options = {
            **per_request,
            "headers": {**per_request.get("headers", {}), "Content-Type": "application/json"},
        }
        self._policy = policy
        self._sleep = sleep
        self._redactor = redactor
        self._closed = False

    def _session_for_request(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("the InveterateClient is closed")
        if self._session is None:
            # Created lazily: a ClientSession must be made inside a running loop.
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                timeout=self._timeout,
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def aclose(self) -> None:
        """Close the session if this transport created it; a borrowed one is left open."""
        self._closed = True
        if self._owns_session and self._session is not None:
            await self._session.close()

    async def send(self, request: PreparedRequest) -> Response:
        """Send with retries; return the final response, or raise APIConnectionError."""
        session = self._session_for_request()
        method = request.method
        options = self._get_options if request.body is None else self._post_options
        loop = asyncio.get_running_loop()
        attempt = 0
        while True:
            attempt += 1
            started = loop.time()
            try:
                async with session.request(
                    method,
                    request.url,
                    data=request.body,
                    allow_redirects=False,
                    **options,
                ) as resp:
                    body = await resp.read()
                    response = Response(resp.status, resp.reason or "", resp.headers, body)
            except (asyncio.TimeoutError, aiohttp.ClientError) as exc:
                self._log(request, type(exc).__name__, attempt, loop.time() - started)
                timed_out = isinstance(exc, asyncio.TimeoutError)
                # These two are raised before any byte of the request was written.
                sent = not isinstance(
                    exc, (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)
                )
                if attempt <= self._policy.max_retries and may_retry_failure(
                    method, sent=sent, timed_out=timed_out
                ):
                    await self._sleep(self._policy.delay(attempt))
                    continue
                raise self._connection_error(request, exc, sent=sent, timed_out=timed_out) from exc
            self._log(request, response.status, attempt, loop.time() - started)
            if attempt <= self._policy.max_retries and may_retry_status(method, response.status):
                await self._sleep(self._policy.delay(attempt, response.headers))
                continue
            return response

    def _connection_error(
        self, request: PreparedRequest, exc: BaseException, *, sent: bool, timed_out: bool
    ) -> APIConnectionError:
        error_class = APITimeoutError if timed_out else APIConnectionError
        detail = "request timed out" if timed_out else self._redactor.text(str(exc))
        return error_class(
            f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__,
            method=request.method,
            url=request.display_url,
            outcome_unknown=sent and request.method != "GET",
        )

    @staticmethod
    def _log(request: PreparedRequest, outcome: int | str, attempt: int, elapsed: float) -> None:
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "%s %s -> %s (attempt %d, %.1f ms)",
                request.method,
                request.url.raw_path,
                outcome,
                attempt,
                elapsed * 1000,
            )
