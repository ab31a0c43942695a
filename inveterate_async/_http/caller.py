"""How the client calls the API: the transport, the retry policy, deadlines, the extra
headers, and the one choke point that gives every error its request's context."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable, Mapping
from typing import TypeVar

import aiohttp
import attrs

from .._config import UNSET, Unset, check_deadline, check_max_retries, client_timeout, is_number
from .._context import add_request_context
from .._errors import InveterateError
from .._exchange import PreparedRequest, Response
from .._redact import Redactor
from .request import check_extra_headers, check_positive_int, request_headers
from .retry import RetryPolicy
from .sending import Sleep, send_with_retries
from .transport import AiohttpTransport

T = TypeVar("T")


class Caller:
    """Sends requests with retries and reads their answers; see ``InveterateClient``
    for the parameters.

    :raises ValueError: for an invalid setting.
    """

    __slots__ = ("_deadline", "_extra_headers", "_policy", "_redactor", "_transport", "sleep")

    def __init__(
        self,
        key: str,
        *,
        session: aiohttp.ClientSession | None,
        timeout: float | aiohttp.ClientTimeout,
        deadline: float | None,
        max_retries: int,
        backoff_base: float,
        max_connections: int,
        max_response_bytes: int,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        check_max_retries(max_retries)
        if not is_number(backoff_base) or not backoff_base >= 0:
            raise ValueError(f"backoff_base must be a number >= 0, got {backoff_base!r}")
        check_positive_int("max_connections", max_connections)
        check_positive_int("max_response_bytes", max_response_bytes)
        self._deadline = check_deadline(deadline)
        self._redactor = Redactor(key)
        self._policy = RetryPolicy(max_retries=max_retries, backoff_base=float(backoff_base))
        self.sleep = sleep
        self._extra_headers: dict[str, str] = {}
        self._transport = AiohttpTransport(
            headers=request_headers(key),
            session=session,
            timeout=client_timeout(timeout),
            max_connections=max_connections,
            max_response_bytes=max_response_bytes,
        )

    def with_options(
        self,
        *,
        timeout: float | aiohttp.ClientTimeout | None,
        max_retries: int | None,
        deadline: float | Unset | None,
        headers: Mapping[str, str] | None,
    ) -> Caller:
        """A caller with other settings on the same session (see
        ``InveterateClient.with_options``)."""
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

    def reserve_connections(self, count: int) -> None:
        """Make room for ``count`` requests at once (see ``AiohttpTransport``)."""
        self._transport.reserve_connections(count)

    async def aclose(self) -> None:
        """Close the own session (a borrowed one stays open)."""
        await self._transport.aclose()

    async def call(
        self,
        request: PreparedRequest,
        read: Callable[[Response], T],
        deadline: float | Unset | None = UNSET,
    ) -> T:
        """Send, read, and pass any error through the one choke point."""
        return self.read(read, request, await self.send(request, deadline))

    async def send(self, request: PreparedRequest, deadline: float | Unset | None) -> Response:
        """Send with retries; the response's headers scrubbed, errors given their context."""
        if self._extra_headers:
            request = attrs.evolve(request, headers={**self._extra_headers, **request.headers})
        try:
            response = await send_with_retries(
                self._transport,
                request,
                policy=self._policy,
                sleep=self.sleep,
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

    def read(
        self, read: Callable[[Response], T], request: PreparedRequest, response: Response
    ) -> T:
        """``read(response)``, its errors given the request's context."""
        try:
            return read(response)
        except InveterateError as error:
            add_request_context(error, request, response, self._redactor)
            raise

    def reveals_key(self, text: str) -> bool:
        """Whether ``text`` holds the API key (a server that echoes it, say)."""
        return self._redactor.reveals(text)

    def scrub(self, error: InveterateError) -> None:
        """Scrub the key out of an error raised outside a request."""
        add_request_context(error, None, None, self._redactor)
