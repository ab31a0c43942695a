"""Reading responses: status to typed error, body to models, next cursor.

Pure functions with no I/O. The errors raised here carry what the response says;
the request they belong to (and the scrubbing of the key) is added by the client at
its one choke point, :func:`~inveterate_async._context.add_request_context`.
"""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

from .._converter import structure_credits
from .._errors import (
    STATUS_ERRORS,
    APIStatusError,
    InvalidResponseError,
    RateLimitError,
    ServerError,
)
from .._exchange import Response
from .._models import Credit, CreditPage, CreditResult
from . import codec
from .request import cursor_text
from .retry import parse_retry_after

_EXCERPT_CHARS = 300
_INVISIBLE_TAGS = frozenset({"script", "style", "template", "noscript"})


class _VisibleText(HTMLParser):
    """Collects the text a browser would show: no tags, comments, scripts or styles."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _INVISIBLE_TAGS:
            self._hidden += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in _INVISIBLE_TAGS and self._hidden:
            self._hidden -= 1

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.parts.append(data)


def _complete_markup(text: str) -> str:
    """``text`` without a comment or tag that a cut left open at its end (the parser
    would give it back as text: ``< !-- a padding...`` of a cut nginx page)."""
    comment = text.rfind("<!--")
    if comment >= 0 and text.find("-->", comment) < 0:
        text = text[:comment]
    tag = text.rfind("<")
    if tag >= 0 and text.find(">", tag) < 0:
        text = text[:tag]
    return text


def excerpt(body: bytes, limit: int = _EXCERPT_CHARS) -> str:
    """A short, single-spaced text of a body; for HTML, only its visible text."""
    text = body[: limit * 64].decode("utf-8", "replace")
    if "<" in text:
        parser = _VisibleText()
        parser.feed(_complete_markup(text))
        parser.close()
        text = " ".join(parser.parts)
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[:limit] + "…"
    return text


def status_error(response: Response) -> APIStatusError:
    """The typed error for a non-2xx response."""
    status = response.status
    message: str | None = None
    data: Any = None
    try:
        parsed = None if response.truncated else codec.loads(response.body)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        data = parsed.get("data")
        if parsed.get("message") is not None:
            message = str(parsed["message"])
    if message is None:
        message = f"HTTP {status} {response.reason}".rstrip()
        text = excerpt(response.body)
        if text:
            message += f": {text}"
    args = (status, message, data, "", "", response.headers, response.body)
    if status == 429:
        return RateLimitError(*args, retry_after=parse_retry_after(response.headers))
    if status >= 500:
        return ServerError(*args)
    return STATUS_ERRORS.get(status, APIStatusError)(*args)


def _json_object(response: Response) -> dict[str, Any]:
    if response.truncated:
        raise InvalidResponseError(
            f"response body is larger than the client's max_response_bytes "
            f"({len(response.body)} bytes read)"
        )
    try:
        body = codec.loads(response.body)
    except ValueError:
        raise InvalidResponseError(
            f"response body is not JSON: {excerpt(response.body)!r}"
        ) from None
    if not isinstance(body, dict):
        raise InvalidResponseError("response body is not a JSON object")
    return body


def read_credits_page(response: Response) -> CreditPage:
    """A :class:`CreditPage` from a GET response, or the matching typed error.

    Reads ``{"data": {"credits": [...], "lastCreditEntry": ...}}``; also accepts
    ``lastCreditEntry`` beside ``data``, and ``data`` as a bare list (a last page).
    """
    if not 200 <= response.status < 300:
        raise status_error(response)
    body = _json_object(response)
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
        raise InvalidResponseError("response has no data object")
    if not isinstance(entries, list):
        raise InvalidResponseError("response data has no credits list")
    try:
        credits = structure_credits(entries)
        next_cursor = cursor_text(cursor)
    except ValueError as exc:
        raise InvalidResponseError(f"unexpected credit data: {exc}") from None
    return CreditPage(credits, next_cursor, body, response.status, response.headers)


def read_credit_result(response: Response) -> CreditResult:
    """A :class:`CreditResult` from a POST response, or the matching typed error.

    A 2xx with an empty body (such as 204) is a success with an empty result: the
    credit was applied.
    """
    if not 200 <= response.status < 300:
        raise status_error(response)
    if not response.body.strip() and not response.truncated:
        return CreditResult("", None, response.status, response.headers)
    body = _json_object(response)
    message = body.get("message")
    data = body.get("data")
    return CreditResult(
        "" if message is None else str(message),
        data,
        response.status,
        response.headers,
        _created_credit(data),
    )


def _created_credit(data: Any) -> Credit | None:
    """The created entry as a :class:`Credit`, when ``data`` is one; the write
    succeeded either way, so anything else is None, not an error."""
    if not isinstance(data, dict) or "amount" not in data:
        return None
    try:
        return structure_credits([data])[0]
    except ValueError:
        return None
