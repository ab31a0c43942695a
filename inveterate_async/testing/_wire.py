"""What the sandbox reads from and writes to HTTP: recorded requests, exact JSON, responses."""

import json
import re
from collections.abc import Mapping
from decimal import Decimal
from types import MappingProxyType
from typing import Any, NoReturn
from urllib.parse import parse_qs, unquote, urlsplit

import attrs
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

# Matched on the raw path: the id is one percent-encoded segment. A raw "." or ".." is a dot
# segment that real servers and proxies resolve, so it must arrive encoded (%2E) to be an id.
_CREDITS_PATH = re.compile(r"/v2\.0/admin/members/(?!\.\.?/)([^/?]+)/credits(?:\?.*)?", re.DOTALL)
_LIMIT = re.compile(r"[0-9]+")
# Larger limits are equivalent to "everything"; capping the digits avoids int() DoS limits.
_MAX_LIMIT_DIGITS = 18


@attrs.frozen
class RecordedRequest:
    """One request as received by the sandbox, exactly as it came over the wire.

    :ivar method: the HTTP method, e.g. ``"GET"``.
    :ivar raw_path: the undecoded path and query.
    :ivar customer_id: the decoded member id segment; None if the path is not the credits
        endpoint.
    :ivar query: the raw query string decoded with :func:`urllib.parse.parse_qs`.
    :ivar cursor: the decoded ``lastCreditEntry``, if any.
    :ivar headers: the request headers (case-insensitive).
    :ivar body: the request body as received.
    """

    method: str
    raw_path: str
    customer_id: str | None
    query: Mapping[str, list[str]]
    cursor: str | None
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        """Parse the body as JSON.

        :returns: the parsed body, with non-integer numbers as :class:`~decimal.Decimal`.
        :raises ValueError: if the body is not valid JSON.
        """
        return json.loads(self.body, parse_float=Decimal)


class BadRequest(Exception):
    """A request the API would reject with 400; the message is sent to the client."""


def record_request(request: web.BaseRequest, body: bytes) -> RecordedRequest:
    """Capture a request as it arrived, decoding the member id and query from the raw path.

    :param request: the request being handled.
    :param body: its body, already read.
    """
    raw_path = request.raw_path
    match = _CREDITS_PATH.fullmatch(raw_path)
    query = parse_qs(urlsplit(raw_path).query, keep_blank_values=True)
    cursors = query.get("lastCreditEntry")
    return RecordedRequest(
        method=request.method,
        raw_path=raw_path,
        customer_id=unquote(match.group(1)) if match else None,
        query=MappingProxyType(query),
        cursor=cursors[0] if cursors else None,
        headers=CIMultiDictProxy(CIMultiDict(request.headers)),
        body=body,
    )


def parse_limit(text: str) -> int:
    """Read a ``limit`` query value.

    :raises BadRequest: if it is not a positive integer.
    """
    digits = text.lstrip("0")
    if not _LIMIT.fullmatch(text) or not digits:
        raise BadRequest("limit must be a positive integer")
    return int(digits) if len(digits) <= _MAX_LIMIT_DIGITS else 10**_MAX_LIMIT_DIGITS


def decode_json(body: bytes) -> object:
    """Parse a UTF-8 JSON body strictly, with every number as :class:`~decimal.Decimal`.

    :raises BadRequest: if the body is not valid UTF-8 JSON (``NaN`` and ``Infinity`` included).
    """
    try:
        return json.loads(
            body.decode("utf-8"),
            parse_float=Decimal,
            parse_int=Decimal,
            parse_constant=_reject_constant,
        )
    except ValueError:  # also UnicodeDecodeError and JSONDecodeError
        raise BadRequest("Body is not valid JSON") from None


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


def compact_json(value: dict[str, Any]) -> str:
    """The cursor text form: what ``json.dumps`` gives without whitespace."""
    return json.dumps(value, separators=(",", ":"))


def encode_json(value: object) -> str:
    """Serialize to JSON text, writing Decimals with their exact digits.

    :raises ValueError: for a non-finite number.
    :raises TypeError: for a mapping key that is not a str, or a value JSON cannot hold.
    """
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"cannot encode {value} as JSON")
        return str(value)
    if isinstance(value, Mapping):
        items = []
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"JSON object keys must be str, not {key!r}")
            items.append(f"{json.dumps(key, ensure_ascii=False)}:{encode_json(item)}")
        return "{" + ",".join(items) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(encode_json(item) for item in value) + "]"
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


def json_response(
    status: int, message: str, data: object, headers: Mapping[str, str] | None = None
) -> web.Response:
    """The API's response envelope, ``{"message": ..., "data": ...}``."""
    return web.Response(
        status=status,
        body=encode_json({"message": message, "data": data}).encode(),
        content_type="application/json",
        charset="utf-8",
        headers=headers,
    )
