"""Sending a request with retries within an optional deadline, logging each attempt.

Retries never apply a credit twice: a request that is not ``replayable`` (a write) is
sent again only after a 429 or when it cannot have left (connection refused).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from .._errors import APIConnectionError, APITimeoutError
from .._exchange import PreparedRequest, Response
from .._redact import Redactor
from .retry import RetryPolicy, may_retry_failure, may_retry_status
from .transport import Transport

logger = logging.getLogger("inveterate_async")

Sleep = Callable[[float], Awaitable[None]]


async def send_with_retries(
    transport: Transport,
    request: PreparedRequest,
    *,
    policy: RetryPolicy,
    sleep: Sleep,
    deadline: float | None,
    redactor: Redactor,
) -> Response:
    """The final response to ``request`` after any retries.

    :param deadline: seconds for the whole call, retries and waits included; when
        it runs out, :class:`APITimeoutError` is raised.
    :raises APIConnectionError: no answer, after the retries allowed.
    """
    loop = asyncio.get_running_loop()
    ends_at = None if deadline is None else loop.time() + deadline
    attempt = 0
    while True:
        attempt += 1
        started = loop.time()
        try:
            if ends_at is None or deadline is None:
                response = await transport.send(request)
            else:
                response = await _within(
                    transport.send(request), ends_at - started, request, deadline
                )
        except APIConnectionError as exc:
            _log(redactor, request, type(exc).__name__, attempt, loop.time() - started)
            timed_out = isinstance(exc, APITimeoutError)
            sent = exc.outcome_unknown or request.replayable
            if (
                attempt > policy.max_retries
                or transport.closed
                or not may_retry_failure(request.replayable, sent=sent, timed_out=timed_out)
            ):
                raise
            delay = policy.delay(attempt)
        else:
            _log(redactor, request, response.status, attempt, loop.time() - started)
            if attempt > policy.max_retries or not may_retry_status(
                request.replayable, response.status
            ):
                return response
            delay = policy.delay(attempt, response.headers)
        if ends_at is not None and loop.time() + delay >= ends_at:
            raise APITimeoutError(
                f"deadline of {deadline:g} s reached after {attempt} attempts",
                method=request.method,
                url=request.display_url,
            )
        await sleep(delay)


async def _within(
    sending: Awaitable[Response], seconds: float, request: PreparedRequest, deadline: float
) -> Response:
    try:
        return await asyncio.wait_for(sending, max(seconds, 0.0))
    except asyncio.TimeoutError:
        # Cut off mid-attempt: a write may have reached the server.
        raise APITimeoutError(
            f"deadline of {deadline:g} s reached during the request",
            method=request.method,
            url=request.display_url,
            outcome_unknown=not request.replayable,
        ) from None


def _log(
    redactor: Redactor,
    request: PreparedRequest,
    outcome: int | str,
    attempt: int,
    elapsed: float,
) -> None:
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug(
            "%s %s -> %s (attempt %d, %.1f ms)",
            request.method,
            redactor.text(request.url.raw_path),
            outcome,
            attempt,
            elapsed * 1000,
        )
