"""Reading responses: status to typed error, body to models, next cursor.

Pure functions with no I/O. The errors raised here carry what the response says;
the request they belong to (and the scrubbing of the key) is added by the client at
its one choke point, :func:`~inveterate_async._context.add_request_context`.
"""

from __future__ import annotations

from collections.abc import Callable
from html.parser import HTMLParser
from typing import Any

import attrs

from . import _json
from ._converter import prepare_credits, structure_credits
from ._errors import (
    STATUS_ERRORS,
    APIStatusError,
    InvalidResponseError,
    RateLimitError,
    ServerError,
)
from ._http import Headers, Response
from ._models import Credit, CreditPage, CreditResult, LedgerPosition, position_after
from ._request import cursor_text
from ._retry import parse_retry_after

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


def excerpt(body: bytes, limit: int = _EXCERPT_CHARS) -> str:
    """A short, single-spaced text of a body; for HTML, only its visible text."""
    text = body[: limit * 64].decode("utf-8", "replace")
    if "<" in text:
        parser = _VisibleText()
        parser.feed(text)
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
        parsed = None if response.truncated else _json.loads(response.body)
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
        body = _json.loads(response.body)
    except ValueError:
        raise InvalidResponseError(
            f"response body is not JSON: {excerpt(response.body)!r}"
        ) from None
    if not isinstance(body, dict):
        raise InvalidResponseError("response body is not a JSON object")
    return body


@attrs.frozen(slots=True)
class PendingPage:
    """A page read and checked whose ``Credit`` objects are not made yet.

    The fan-out queues these: the objects are made by the consumer just before it
    reads them, so they die young instead of waiting (and being scanned by the garbage
    collector) in the queue.
    """

    make_credits: Callable[[], tuple[Credit, ...]] = attrs.field(repr=False)
    next_cursor: str | None
    raw: dict[str, Any] = attrs.field(repr=False)
    status: int
    headers: Headers = attrs.field(repr=False)

    @property
    def position(self) -> LedgerPosition:
        """Where the ledger stands after this page."""
        return position_after(self.next_cursor)

    def page(self) -> CreditPage:
        """The :class:`CreditPage`, its credits made now."""
        return CreditPage(
            self.make_credits(), self.next_cursor, self.raw, self.status, self.headers
        )


def read_credits_page(response: Response) -> CreditPage:
    """A :class:`CreditPage` from a GET response, or the matching typed error.

    Reads ``{"data": {"credits": [...], "lastCreditEntry": ...}}``; also accepts
    ``lastCreditEntry`` beside ``data``, and ``data`` as a bare list (a last page).
    """
    return read_pending_page(response).page()


def read_pending_page(response: Response) -> PendingPage:
    """As :func:`read_credits_page`, every check done, the ``Credit`` objects made later."""
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
        make_credits = prepare_credits(entries)
        next_cursor = cursor_text(cursor)
    except ValueError as exc:
        raise InvalidResponseError(f"unexpected credit data: {exc}") from None
    return PendingPage(make_credits, next_cursor, body, response.status, response.headers)


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
