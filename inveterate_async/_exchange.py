"""The protocol's two messages: a request ready to send and the response received.

Plain data, no I/O: requests are built by ``_request``, responses read by ``_response``,
and a transport turns one into the other.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

Headers = CIMultiDictProxy[str]
NO_HEADERS: Headers = CIMultiDictProxy(CIMultiDict())


@attrs.frozen(slots=True)
class PreparedRequest:
    """A request ready to send.

    :param method: the HTTP method.
    :param url: the full URL, percent-encoded already.
    :param headers: headers of this request only (the client adds the key and its own).
    :param body: the exact body bytes, or None.
    :param replayable: whether sending it twice is harmless (a read). Retries and
        ``outcome_unknown`` are decided from this alone.
    """

    method: str
    url: URL
    headers: Mapping[str, str] = attrs.field(factory=dict)
    body: bytes | None = None
    replayable: bool = False

    @property
    def display_url(self) -> str:
        """The URL as shown in errors and logs (it never holds the API key)."""
        return str(self.url)


def as_headers(headers: Mapping[str, str] | None) -> Headers:
    """An immutable case-insensitive multi-dict of ``headers``."""
    if headers is None:
        return NO_HEADERS
    if isinstance(headers, CIMultiDictProxy):
        return headers
    return CIMultiDictProxy(CIMultiDict(headers))


_REQUEST_ID_HEADERS = ("x-request-id", "x-amzn-requestid", "cf-ray")


def request_id(headers: Headers) -> str | None:
    """The request id a server or CDN gave the response, or None."""
    for name in _REQUEST_ID_HEADERS:
        value = headers.get(name)
        if value:
            return value
    return None


@attrs.frozen(slots=True)
class Response:
    """What a transport received for a request.

    :param status: the HTTP status code.
    :param reason: the status line's reason phrase.
    :param headers: the response headers (case-insensitive, repeated names kept).
    :param body: the body bytes, at most the client's ``max_response_bytes``.
    :param truncated: True when the body was longer than that and cut there.
    """

    status: int
    reason: str
    headers: Headers = attrs.field(converter=as_headers)
    body: bytes
    truncated: bool = False
