"""Every SDK error answered with a deliberate HTTP status and a body the caller can act on.

The body is always ``{"error", "message", "outcome_unknown", "request_id"}``:

- ``error``: a stable code to branch on (the table in ``docs/fastapi.md``).
- ``outcome_unknown``: True when a credit may have been applied although the call failed:
  the caller must check the ledger before retrying. When False, nothing was applied and
  the same request can be retried.
- ``request_id``: the Inveterate API's id of the failed request, for its support.

The API key never appears: the SDK scrubs it from every error, and the upstream message is
passed on only for a 400, where it describes the caller's own input.
"""

from __future__ import annotations

import logging
import math

from fastapi import Request
from fastapi.responses import JSONResponse

from inveterate_async import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    BadRequestError,
    InvalidResponseError,
    InveterateError,
    NotFoundError,
    RateLimitError,
    ServerError,
)

logger = logging.getLogger(__name__)

MAY_HAVE_BEEN_APPLIED = (
    "the credit may have been applied: check the member's ledger before retrying"
)


def error_response(error: InveterateError) -> JSONResponse:
    """The HTTP answer to an SDK error: see the table in ``docs/fastapi.md``."""
    outcome_unknown = bool(getattr(error, "outcome_unknown", False))
    request_id = getattr(error, "request_id", None)
    status, code, message = _classify(error, outcome_unknown)
    level = logging.ERROR if status == 500 else logging.WARNING
    logger.log(level, "credits API call failed (%s): %s", code, error)
    headers = {}
    if isinstance(error, RateLimitError) and error.retry_after is not None:
        headers["Retry-After"] = str(math.ceil(error.retry_after))
    body = {
        "error": code,
        "message": message,
        "outcome_unknown": outcome_unknown,
        "request_id": request_id,
    }
    return JSONResponse(body, status_code=status, headers=headers)


def _classify(error: InveterateError, outcome_unknown: bool) -> tuple[int, str, str]:
    """``(status, error code, message)`` for an SDK error, most specific case first."""
    if isinstance(error, APITimeoutError):
        message = MAY_HAVE_BEEN_APPLIED if outcome_unknown else "the credits API timed out"
        return 504, "upstream_timeout", message
    if outcome_unknown:
        return 502, "outcome_unknown", MAY_HAVE_BEEN_APPLIED
    if isinstance(error, APIStatusError) and error.is_auth_error:
        # Our key, not the caller's input: a configuration fault of this service.
        return 500, "upstream_auth", "the credits service is misconfigured"
    if isinstance(error, BadRequestError):
        return 400, "bad_request", error.message
    if isinstance(error, NotFoundError):
        return 404, "not_found", "no such member"
    if isinstance(error, RateLimitError):
        return 429, "rate_limited", "too many requests to the credits API: retry later"
    if isinstance(error, ServerError):
        return 502, "upstream_error", "the credits API failed: retry later"
    if isinstance(error, APIConnectionError):
        return 502, "upstream_unreachable", "the credits API could not be reached"
    if isinstance(error, InvalidResponseError):
        return 502, "upstream_invalid_response", "the credits API sent an unreadable answer"
    return 502, "upstream_error", "the credits API answered unexpectedly"


async def handle_sdk_error(request: Request, error: Exception) -> JSONResponse:
    """The app's exception handler for :class:`InveterateError`."""
    if not isinstance(error, InveterateError):  # registered for InveterateError only
        raise error
    return error_response(error)
