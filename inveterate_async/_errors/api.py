"""The base error, and the errors of a call to the API (no answer, a non-2xx answer, an
answer that cannot be read)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from multidict import CIMultiDict

from .._exchange import Headers, PreparedRequest, Response, as_headers, request_id
from .._redact import elided

if TYPE_CHECKING:
    from .._redact import Redactor

UNKNOWN_OUTCOME_HINT = "the credit may have been applied: check the ledger before retrying"

# How a 400 about the key reads: the API documents 400 for "check your API key ...".
AUTH_MESSAGE = re.compile(
    r"api[ _-]?key|unauthori[sz]ed|forbidden|authenticat|credential", re.IGNORECASE
)

# Control characters (and Unicode line breaks) shown escaped, so str() is one line.
_ESCAPES = {code: f"\\x{code:02x}" for code in (*range(0x20), 0x7F)}
_ESCAPES.update(
    {ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t", 0x85: "\\x85"},
)
_ESCAPES.update({0x2028: "\\u2028", 0x2029: "\\u2029"})


def one_line(text: str) -> str:
    """``text`` with line breaks and control characters escaped."""
    return text.translate(_ESCAPES)


class InveterateError(Exception):
    """Base class of every error raised by inveterate_async.

    :param message: what went wrong (exact, possibly several lines; ``str()`` is one line).
    :param method: the HTTP method of the request it belongs to, if any.
    :param url: the URL of that request (without the key).
    """

    _repr_fields: tuple[str, ...] = ("message",)

    def __init__(self, message: str = "", *, method: str = "", url: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.method = method
        self.url = url

    def _describe(self) -> str:
        where = f"{self.method} {self.url}: " if self.method else ""
        return where + self.message

    def __str__(self) -> str:
        return one_line(self._describe())

    # The attribute that holds the cause, for errors that wrap one (restored on unpickling).
    _cause_field: str | None = None

    def __repr__(self) -> str:
        # A cursor is elided: a server that echoes the key in its cursors would show it.
        shown = ((name, getattr(self, name)) for name in self._repr_fields)
        fields = ", ".join(
            f"{name}={elided(value) if name == 'cursor' else repr(value)}" for name, value in shown
        )
        return f"{type(self).__name__}({fields})"

    def __reduce__(self) -> tuple[Any, ...]:
        state = dict(vars(self))
        if "headers" in state:
            state["headers"] = CIMultiDict(state["headers"])
        return (_restore, (type(self), state))

    def add_context(self, request: PreparedRequest, response: Response | None) -> None:
        """Fill in what the error lacks of its request and response (the choke point's job)."""
        if not self.method:
            self.method = request.method
            self.url = request.display_url

    def redact(self, redactor: Redactor) -> None:
        """Scrub the key out of every attribute (the choke point's job)."""
        for name, value in vars(self).items():
            setattr(self, name, redactor.any(value))
        self.args = (self.message,)


def _restore(cls: type[InveterateError], state: dict[str, Any]) -> InveterateError:
    error = cls.__new__(cls)
    if "headers" in state:
        state["headers"] = as_headers(state["headers"])
    vars(error).update(state)
    error.args = (error.message,)
    if cls._cause_field is not None:
        error.__cause__ = getattr(error, cls._cause_field)
    return error


def _with_hint(text: str, outcome_unknown: bool) -> str:
    return f"{text} ({UNKNOWN_OUTCOME_HINT})" if outcome_unknown else text


class APIConnectionError(InveterateError):
    """The request failed on the network: no HTTP response was received.

    ``outcome_unknown`` is True when a write may have reached the server before the
    failure, so the credit may have been applied.
    """

    _repr_fields: tuple[str, ...] = ("method", "url", "message", "outcome_unknown")

    def __init__(
        self, message: str, *, method: str = "", url: str = "", outcome_unknown: bool = False
    ) -> None:
        super().__init__(message, method=method, url=url)
        self.outcome_unknown = outcome_unknown

    def _describe(self) -> str:
        return _with_hint(super()._describe(), self.outcome_unknown)


class APITimeoutError(APIConnectionError):
    """The request timed out: an attempt's ``timeout`` or the call's ``deadline`` ran out."""


class APIStatusError(InveterateError):
    """The API answered with a non-2xx status.

    ``message`` and ``data`` come from the API's ``{message, data}`` body (or the visible
    text of an HTML error page); ``body`` holds the raw bytes and ``headers`` the response
    headers (a case-insensitive multi-dict). ``request_id`` is the server's or CDN's id of
    the request, if it sent one. A 3xx is raised as this base class: redirects are never
    followed, because they would carry the API key elsewhere.
    """

    _repr_fields: tuple[str, ...] = ("status", "message", "method", "url", "request_id")

    def __init__(
        self,
        status: int,
        message: str,
        data: Any = None,
        method: str = "",
        url: str = "",
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
    ) -> None:
        super().__init__(message, method=method, url=url)
        self.status = status
        self.data = data
        self.headers: Headers = as_headers(headers)
        self.body = body

    @property
    def request_id(self) -> str | None:
        """``x-request-id``, ``x-amzn-requestid`` or ``cf-ray`` of the response, or None."""
        return request_id(self.headers)

    @property
    def is_auth_error(self) -> bool:
        """Whether the API key was refused: a 401 or 403, or a 400 whose message is about
        the key. The API answers a wrong key and a bad request both with 400, so for a 400
        this reads the message: likely, not certain."""
        return self.status in (401, 403) or (
            self.status == 400 and AUTH_MESSAGE.search(self.message) is not None
        )

    def _describe(self) -> str:
        where = f" from {self.method} {self.url}" if self.method else ""
        return f"HTTP {self.status}{where}: {self.message}"


class BadRequestError(APIStatusError):
    """400: the request was refused (bad key, id or body). Nothing was applied."""


class AuthenticationError(APIStatusError):
    """401: the API key was not accepted."""


class PermissionDeniedError(APIStatusError):
    """403: the API key may not do this."""


class NotFoundError(APIStatusError):
    """404: no such resource."""


class RateLimitError(APIStatusError):
    """429: too many requests. ``retry_after`` is the server's wait in seconds, if given."""

    _repr_fields: tuple[str, ...] = (*APIStatusError._repr_fields, "retry_after")

    def __init__(
        self,
        status: int,
        message: str,
        data: Any = None,
        method: str = "",
        url: str = "",
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
        *,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(status, message, data, method, url, headers, body)
        self.retry_after = retry_after


class ServerError(APIStatusError):
    """5xx: the server failed.

    ``outcome_unknown`` is True for a write: the API documents that a 500 may come after
    part of the change was applied.
    """

    _repr_fields: tuple[str, ...] = (*APIStatusError._repr_fields, "outcome_unknown")

    def __init__(
        self,
        status: int,
        message: str,
        data: Any = None,
        method: str = "",
        url: str = "",
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
        *,
        outcome_unknown: bool = False,
    ) -> None:
        super().__init__(status, message, data, method, url, headers, body)
        self.outcome_unknown = outcome_unknown

    def add_context(self, request: PreparedRequest, response: Response | None) -> None:
        super().add_context(request, response)
        self.outcome_unknown = not request.replayable

    def _describe(self) -> str:
        return _with_hint(super()._describe(), self.outcome_unknown)


class InvalidResponseError(InveterateError):
    """A 2xx answer whose body is not JSON, not of the expected shape, or too large.

    ``outcome_unknown`` is True for a write: the API answered, so the credit may well
    have been applied, but the answer could not be read.
    """

    _repr_fields: tuple[str, ...] = ("message", "method", "url", "status", "outcome_unknown")

    def __init__(
        self,
        message: str,
        *,
        method: str = "",
        url: str = "",
        body: bytes = b"",
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
        outcome_unknown: bool = False,
    ) -> None:
        super().__init__(message, method=method, url=url)
        self.body = body
        self.status = status
        self.headers: Headers = as_headers(headers)
        self.outcome_unknown = outcome_unknown

    @property
    def request_id(self) -> str | None:
        """The request id of the response, if it had one."""
        return request_id(self.headers)

    def add_context(self, request: PreparedRequest, response: Response | None) -> None:
        super().add_context(request, response)
        if response is not None and self.status is None:
            self.status = response.status
            self.headers = response.headers
            self.body = response.body
            self.outcome_unknown = not request.replayable

    def _describe(self) -> str:
        return _with_hint(super()._describe(), self.outcome_unknown)


class PaginationError(InvalidResponseError):
    """The API returned a cursor already seen in this iteration (the ledger would loop)."""


STATUS_ERRORS: Mapping[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
}
