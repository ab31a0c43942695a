"""Reading responses: status to typed error, body to models, next cursor.

Pure functions with no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import attrs

from . import _json
from ._converter import structure_credit
from ._errors import (
    STATUS_ERRORS,
    APIStatusError,
    InvalidResponseError,
    RateLimitError,
    ServerError,
)
from ._models import CreditPage, CreditResult
from ._redact import Redactor
from ._request import PreparedRequest, cursor_text
from ._retry import parse_retry_after

_TAG = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")
_EXCERPT_CHARS = 200


@attrs.frozen(slots=True)
class Response:
    """What the transport received for a request."""

    status: int
    reason: str
    headers: Mapping[str, str]
    body: bytes


def _excerpt(body: bytes) -> str:
    text = _SPACE.sub(" ", _TAG.sub(" ", body.decode("utf-8", "replace"))).strip()
    if len(text) > _EXCERPT_CHARS:
        text = text[:_EXCERPT_CHARS] + "…"
    return text


def status_error(
    request: PreparedRequest, response: Response, redactor: Redactor
) -> APIStatusError:
    """The typed error for a non-2xx response, with the key scrubbed from all of it."""
    status = response.status
    message: str | None = None
    data: Any = None
    try:
        parsed = _json.loads(response.body)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        data = parsed.get("data")
        if parsed.get("message") is not None:
            message = str(parsed["message"])
    if message is None:
        excerpt = _excerpt(response.body)
        message = f"HTTP {status} {response.reason}".rstrip()
        if excerpt:
            message += f": {excerpt}"
    args = (
        status,
        redactor.text(message),
        redactor.data(data),
        request.method,
        redactor.text(request.display_url),
        redactor.headers(response.headers),
        redactor.bytes(response.body),
    )
    if status == 429:
        return RateLimitError(*args, retry_after=parse_retry_after(response.headers))
    if status >= 500:
        return ServerError(*args, outcome_unknown=request.method != "GET")
    return STATUS_ERRORS.get(status, APIStatusError)(*args)


def _invalid(request: PreparedRequest, response: Response, what: str) -> InvalidResponseError:
    return InvalidResponseError(
        what, method=request.method, url=request.display_url, body=response.body
    )


def _json_object(request: PreparedRequest, response: Response) -> dict[str, Any]:
    try:
        body = _json.loads(response.body)
    except ValueError:
        raise _invalid(
            request, response, f"response body is not JSON: {_excerpt(response.body)!r}"
        ) from None
    if not isinstance(body, dict):
        raise _invalid(request, response, "response body is not a JSON object")
    return body


def read_credits_page(
    request: PreparedRequest, response: Response, redactor: Redactor
) -> CreditPage:
    """A :class:`CreditPage` from a GET response, or the matching typed error.

    Reads ``{"data": {"credits": [...], "lastCreditEntry": ...}}``; also accepts
    ``lastCreditEntry`` beside ``data``, and ``data`` as a bare list (a last page).
    """
    if not 200 <= response.status < 300:
        raise status_error(request, response, redactor)
    body = _json_object(request, response)
    data = body.get("data")
    if isinstance(data, list):
        entries: Any = data
        cursor = None
    elif isinstance(data, dict):
        entries = data.get("credits")
        cursor = (
            data["lastCreditEntry"] if "lastCreditEntry" in data else body.get("lastCreditEntry")
        )
    else:
        raise _invalid(request, response, "response has no data object")
    if not isinstance(entries, list):
        raise _invalid(request, response, "response data has no credits list")
    try:
        credits = tuple([structure_credit(entry) for entry in entries])
        next_cursor = cursor_text(cursor)
    except ValueError as exc:
        raise _invalid(request, response, f"unexpected credit data: {exc}") from None
    return CreditPage(credits, next_cursor, body)


def read_credit_result(
    request: PreparedRequest, response: Response, redactor: Redactor
) -> CreditResult:
    """A :class:`CreditResult` from a POST response, or the matching typed error."""
    if not 200 <= response.status < 300:
        raise status_error(request, response, redactor)
    body = _json_object(request, response)
    message = body.get("message")
    return CreditResult("" if message is None else str(message), body.get("data"))
