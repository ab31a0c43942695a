"""The exceptions the SDK raises; all subclass :class:`InveterateError`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

UNKNOWN_OUTCOME_HINT = "the credit may have been applied: check the ledger before retrying"


class InveterateError(Exception):
    """Base class of every error raised by inveterate_async."""


class APIConnectionError(InveterateError):
    """The request failed on the network: no HTTP response was received.

    ``outcome_unknown`` is True when a write (POST) may have reached the server
    before the failure, so the credit may have been applied.
    """

    def __init__(
        self, message: str, *, method: str, url: str, outcome_unknown: bool = False
    ) -> None:
        self.message = message
        self.method = method
        self.url = url
        self.outcome_unknown = outcome_unknown
        text = f"{method} {url}: {message}"
        if outcome_unknown:
            text += f" ({UNKNOWN_OUTCOME_HINT})"
        super().__init__(text)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(method={self.method!r}, url={self.url!r}, "
            f"message={self.message!r}, outcome_unknown={self.outcome_unknown!r})"
        )


class APITimeoutError(APIConnectionError):
    """The request timed out (connecting, sending, or waiting for the response)."""


class APIStatusError(InveterateError):
    """The API answered with a non-2xx status.

    ``message`` and ``data`` come from the API's ``{message, data}`` body; ``body``
    holds the raw bytes. A 3xx is raised as this base class: redirects are never
    followed, because they would carry the API key elsewhere.
    """

    def __init__(
        self,
        status: int,
        message: str,
        data: Any,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
    ) -> None:
        self.status = status
        self.message = message
        self.data = data
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        super().__init__(self._describe())

    def _describe(self) -> str:
        return f"HTTP {self.status} from {self.method} {self.url}: {self.message}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status!r}, message={self.message!r}, "
            f"method={self.method!r}, url={self.url!r})"
        )


class BadRequestError(APIStatusError):
    """400: the request was malformed (bad key, id or body). Nothing was applied."""


class AuthenticationError(APIStatusError):
    """401: the API key was not accepted."""


class PermissionDeniedError(APIStatusError):
    """403: the API key may not do this."""


class NotFoundError(APIStatusError):
    """404: no such resource."""


class RateLimitError(APIStatusError):
    """429: too many requests. ``retry_after`` is the server's wait in seconds, if given."""

    def __init__(
        self,
        status: int,
        message: str,
        data: Any,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
        *,
        retry_after: float | None = None,
    ) -> None:
        self.retry_after = retry_after
        super().__init__(status, message, data, method, url, headers, body)


class ServerError(APIStatusError):
    """5xx: the server failed.

    ``outcome_unknown`` is True for a write: the API documents that a 500 may come
    after part of the change was applied.
    """

    def __init__(
        self,
        status: int,
        message: str,
        data: Any,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
        *,
        outcome_unknown: bool = False,
    ) -> None:
        self.outcome_unknown = outcome_unknown
        super().__init__(status, message, data, method, url, headers, body)

    def _describe(self) -> str:
        text = super()._describe()
        if self.outcome_unknown:
            text += f" ({UNKNOWN_OUTCOME_HINT})"
        return text


class InvalidResponseError(InveterateError):
    """A 2xx response whose body is not JSON or not of the expected shape."""

    def __init__(self, message: str, *, method: str = "", url: str = "", body: bytes = b"") -> None:
        self.message = message
        self.method = method
        self.url = url
        self.body = body
        super().__init__(f"{method} {url}: {message}" if method else message)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(message={self.message!r}, url={self.url!r})"


class PaginationError(InvalidResponseError):
    """The API returned a cursor already seen in this iteration (a loop)."""


STATUS_ERRORS: Mapping[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
}
