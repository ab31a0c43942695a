"""Building requests: URLs, encoded path segments and cursors, headers, JSON bodies.

Pure functions with no I/O; every argument is checked here, before anything is sent.
"""

from __future__ import annotations

import ipaddress
import json
import string
from collections.abc import Mapping
from decimal import Decimal
from urllib.parse import quote

from yarl import URL

from .._exchange import PreparedRequest
from .._money import DECIMAL_TEXT
from .._version import __version__

PRODUCTION_HOST = "public.inveterateapi.com"
DEFAULT_BASE_URL = f"https://{PRODUCTION_HOST}/v2.0"
USER_AGENT = f"inveterate-async/{__version__}"
API_KEY_HEADER = "X-Inveterate-Api-Key"


_JSON_CONTENT = {"Content-Type": "application/json"}


def check_api_key(api_key: object) -> str:
    """Return the key if it can be sent as a header value, else raise ValueError."""
    if not isinstance(api_key, str) or not api_key:
        raise ValueError("api_key is required: pass api_key=... or set INVETERATE_API_KEY")
    if api_key != api_key.strip() or any(ord(c) < 0x20 or ord(c) == 0x7F for c in api_key):
        # The key itself is never quoted in the message: it is a secret.
        raise ValueError("api_key contains whitespace or control characters")
    return api_key


# Set by the SDK on every request: extra headers may never replace them.
_RESERVED_HEADERS = frozenset(
    {
        API_KEY_HEADER.lower(),
        "accept",
        "accept-encoding",
        "user-agent",
        "content-type",
        "content-length",
        "transfer-encoding",
        "host",
    }
)


def check_extra_headers(headers: object) -> dict[str, str]:
    """Headers a caller adds to every request, checked.

    :raises ValueError: for a non-str name or value, a line break, or a header the SDK
        sets itself (the key, Accept, User-Agent, Content-Type ...).
    """
    if not isinstance(headers, Mapping):
        raise ValueError(f"headers must be a mapping, not {type(headers).__name__}")
    checked = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not isinstance(value, str) or not name:
            raise ValueError(f"header names and values must be non-empty str: {name!r}")
        if any(c in name + value for c in "\r\n\0"):
            raise ValueError(f"header {name!r} contains a line break")
        if name.lower() in _RESERVED_HEADERS:
            raise ValueError(f"header {name!r} is set by the SDK and cannot be replaced")
        checked[name] = value
    return checked


def request_headers(api_key: str) -> dict[str, str]:
    """The headers every request carries."""
    return {
        API_KEY_HEADER: api_key,
        "Accept": "application/json",
        "User-Agent": USER_AGENT,
    }


def is_loopback(host: str) -> bool:
    """Whether a host name or address is this machine (localhost, 127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_base_url(base_url: str, *, allow_insecure_http: bool = False) -> str:
    """Validate the API root: https, except for loopback hosts or with the opt-in.

    :param allow_insecure_http: allow plain http to a non-loopback host (a sandbox in
        docker-compose, say); never for the production API.
    :returns: the encoded URL text without a trailing slash.
    :raises ValueError: if the URL is not an acceptable API root.
    """
    if not isinstance(base_url, str) or not base_url:
        raise ValueError("base_url must be a non-empty string")
    try:
        url = URL(base_url)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"base_url is not a valid URL: {base_url!r}") from exc
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"base_url must be an http(s) URL with a host: {base_url!r}")
    if url.scheme == "http" and not is_loopback(url.host):
        if url.host == PRODUCTION_HOST:
            raise ValueError(f"the production API is only reached over https: {base_url!r}")
        if not allow_insecure_http:
            raise ValueError(
                f"base_url must use https (plain http is allowed for loopback hosts, or "
                f"with allow_insecure_http=True / INVETERATE_ALLOW_INSECURE_HTTP=1): {base_url!r}"
            )
    if url.user is not None or url.password is not None:
        raise ValueError("base_url must not contain credentials")
    if url.query_string or url.fragment:
        raise ValueError(f"base_url must not have a query or fragment: {base_url!r}")
    return str(url).rstrip("/")


def encode_customer_id(customer_id: object) -> str:
    """Percent-encode a customer id as exactly one path segment."""
    if isinstance(customer_id, bool) or not isinstance(customer_id, (str, int)):
        raise ValueError(f"customer_id must be a str or int, not {type(customer_id).__name__}")
    text = str(customer_id)
    if not text:
        raise ValueError("customer_id must not be empty")
    segment = quote(text, safe="")
    # "." and ".." are dot-segments that a URL normaliser would resolve away.
    if segment in (".", ".."):
        segment = segment.replace(".", "%2E")
    return segment


_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")
# Each ASCII character as quote(..., safe="") writes it, looked up in C.
_ASCII_ENCODED = {
    chr(code): chr(code) if chr(code) in _UNRESERVED else f"%{code:02X}" for code in range(128)
}.__getitem__


def encode_query_value(value: str) -> str:
    """Percent-encode every UTF-8 byte outside RFC 3986's unreserved set."""
    if value.isascii():
        # Cursors are ASCII JSON: about twice as fast as quote(), same text.
        return "".join(map(_ASCII_ENCODED, value))
    return quote(value, safe="")


def cursor_text(cursor: object) -> str | None:
    """The text form of a cursor: strings as they are, JSON values as compact JSON.

    An empty string or None means "no cursor".
    """
    if cursor is None or cursor == "":
        return None
    if isinstance(cursor, str):
        return cursor
    if isinstance(cursor, (Mapping, list)):
        try:
            return json.dumps(cursor, separators=(",", ":"), default=_json_float)
        except RecursionError:
            raise ValueError("cursor is nested too deeply") from None
    raise ValueError(f"cursor must be a str or a JSON object, not {type(cursor).__name__}")


def _json_float(value: object) -> float:
    # Cursor objects are parsed with Decimal numbers; the API expects them back as
    # json.dumps writes the float json.loads would have read.
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def check_positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def credits_path(base_url: str, customer_id: object) -> str:
    """The encoded URL of one member's credits collection."""
    return f"{base_url}/admin/members/{encode_customer_id(customer_id)}/credits"


def credits_page_url(base_url: str, customer_id: object, limit: int | None) -> str:
    """The encoded URL of a member's first page of ``limit`` credits; a page loop
    makes it once and adds each cursor with :func:`credits_page_request`."""
    url = credits_path(base_url, customer_id)
    if limit is not None:
        url = f"{url}?limit={check_positive_int('limit', limit)}"
    return url


def credits_page_request(page_url: str, cursor: object) -> PreparedRequest:
    """GET the page after ``cursor`` of a :func:`credits_page_url`."""
    text = cursor_text(cursor)
    if text is not None:
        # The path is percent-encoded and the base URL has no query: a "?" is the limit's.
        separator = "&" if "?" in page_url else "?"
        page_url = f"{page_url}{separator}lastCreditEntry={encode_query_value(text)}"
    return PreparedRequest("GET", URL(page_url, encoded=True), replayable=True)


def list_credits_request(
    base_url: str, customer_id: object, *, limit: int | None, cursor: object
) -> PreparedRequest:
    """GET one page of a member's credits."""
    return credits_page_request(credits_page_url(base_url, customer_id, limit), cursor)


def amount_json(amount: object) -> str:
    """The exact JSON number text of a credit amount; raises ValueError if invalid."""
    if isinstance(amount, bool):
        raise ValueError("amount must be a number, not a bool")
    if isinstance(amount, int):
        value = Decimal(amount)
    elif isinstance(amount, Decimal):
        value = amount
    elif isinstance(amount, float):
        raise ValueError(
            f"amount must not be a float ({amount!r} is inexact): pass a Decimal or a "
            f"decimal str, e.g. Decimal({str(amount)!r})"
        )
    elif isinstance(amount, str):
        if not DECIMAL_TEXT.fullmatch(amount):
            raise ValueError(f"amount is not a decimal number: {amount!r}")
        value = Decimal(amount)
    else:
        raise ValueError(
            f"amount must be a Decimal, a decimal str or an int, not {type(amount).__name__}"
        )
    if not value.is_finite():
        raise ValueError(f"amount must be finite, got {amount!r}")
    if value.is_zero():
        raise ValueError("amount must not be zero")
    # str() keeps the exact digits ("10.10"); JSON accepts its exponent forms too.
    return str(value)


def create_credit_request(
    base_url: str,
    customer_id: object,
    amount: object,
    *,
    note: str | None,
    force: bool | None,
) -> PreparedRequest:
    """POST a credit; keys whose argument is None are left out of the body."""
    url = credits_path(base_url, customer_id)
    parts = [f'"amount":{amount_json(amount)}']
    if note is not None:
        if not isinstance(note, str):
            raise ValueError(f"note must be a str, not {type(note).__name__}")
        parts.append(f'"note":{json.dumps(note)}')
    if force is not None:
        if not isinstance(force, bool):
            raise ValueError(f"force must be a bool, not {type(force).__name__}")
        parts.append(f'"force":{"true" if force else "false"}')
    body = ("{" + ",".join(parts) + "}").encode()
    return PreparedRequest("POST", URL(url, encoded=True), _JSON_CONTENT, body)
