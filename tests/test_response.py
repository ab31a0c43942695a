"""Response reading: bodies to models, statuses to typed errors, key scrubbing."""

import json
from collections.abc import Callable
from datetime import datetime, timezone
from decimal import Decimal
from typing import TypeVar

import attrs
import pytest
from yarl import URL

from inveterate_async import (
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    Credit,
    InvalidResponseError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
)
from inveterate_async._context import add_request_context
from inveterate_async._converter import converter, structure_credits, structure_datetime
from inveterate_async._errors import InveterateError
from inveterate_async._exchange import PreparedRequest, Response
from inveterate_async._http import codec as _json
from inveterate_async._http.response import read_credit_result, read_credits_page
from inveterate_async._redact import Redactor

KEY = "sk_live_SECRET_123"
GET = PreparedRequest(
    "GET", URL("https://api.example.com/v2.0/admin/members/1/credits"), replayable=True
)
POST = PreparedRequest("POST", GET.url, {"Content-Type": "application/json"}, b'{"amount":1}')
REDACTOR = Redactor(KEY)
T = TypeVar("T")


def read(reader: Callable[[Response], T], request: PreparedRequest, response: Response) -> T:
    """Read as the client does: errors pass through the one choke point."""
    try:
        return reader(response)
    except InveterateError as error:
        add_request_context(error, request, response, REDACTOR)
        raise


@pytest.fixture(autouse=True, params=["stdlib", "fast"])
def json_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test here runs with the standard library parser and with msgspec."""
    if request.param == "stdlib":
        monkeypatch.setattr(_json, "loads", _json.loads_stdlib)
    else:
        pytest.importorskip("msgspec")
        monkeypatch.setattr(_json, "loads", _json.loads_fast)


def ok(body: bytes, status: int = 200) -> Response:
    return Response(status, "OK", {"Content-Type": "application/json"}, body)


def test_page_is_read_with_exact_money_and_aware_dates() -> None:
    body = (
        b'{"message":"ok","data":{"credits":[{"id":"c1","amount":10.10,"createdAt":'
        b'"2024-03-01T12:00:00.000Z","newBalance":110.10,"reason":"goodwill","note":null,'
        b'"extra":{"x":1}}],"lastCreditEntry":"abc"}}'
    )
    page = read(read_credits_page, GET, ok(body))
    (credit,) = page.credits
    assert credit == Credit(
        Decimal("10.10"),
        datetime(2024, 3, 1, 12, tzinfo=timezone.utc),
        Decimal("110.10"),
        "goodwill",
        None,
        "c1",
    )
    assert str(credit.amount) == "10.10"
    assert credit.raw["extra"] == {"x": 1}
    assert page.next_cursor == "abc"
    assert page.raw["message"] == "ok"


def test_object_cursor_and_top_level_cursor_and_bare_list() -> None:
    body = b'{"data":{"credits":[],"lastCreditEntry":{"pk":"m#1","n":2.50}}}'
    assert read(read_credits_page, GET, ok(body)).next_cursor == '{"pk":"m#1","n":2.5}'
    body = b'{"data":{"credits":[]},"lastCreditEntry":"top"}'
    assert read(read_credits_page, GET, ok(body)).next_cursor == "top"
    body = b'{"message":"ok","data":[{"amount":1}]}'
    page = read(read_credits_page, GET, ok(body))
    assert page.next_cursor is None
    assert page.credits[0].amount == Decimal(1)


@pytest.mark.parametrize("cursor", [b"null", b'""'])
def test_missing_cursor_means_last_page(cursor: bytes) -> None:
    body = b'{"data":{"credits":[],"lastCreditEntry":' + cursor + b"}}"
    assert read(read_credits_page, GET, ok(body)).next_cursor is None


@pytest.mark.parametrize(
    ("body", "what"),
    [
        (b"<html>oops</html>", "not JSON"),
        (b"[1]", "not a JSON object"),
        (b'{"message":"x"}', "no data"),
        (b'{"data":{"items":[]}}', "no credits list"),
        (b'{"data":{"credits":[5]}}', "not an object"),
        (b'{"data":{"credits":[{"note":"x"}]}}', "no amount"),
        (b'{"data":{"credits":[{"amount":"ten"}]}}', "amount"),
        (b'{"data":{"credits":[{"amount":true}]}}', "amount"),
        (b'{"data":{"credits":[{"amount":NaN}]}}', "not JSON"),
        (b'{"data":{"credits":[{"amount":1,"newBalance":[]}]}}', "not a decimal"),
        (b'{"data":{"credits":[{"amount":1,"createdAt":"yesterday"}]}}', "createdAt|yesterday"),
        (b'{"data":{"credits":[{"amount":1,"createdAt":true}]}}', "timestamp"),
        (b'{"data":{"credits":[{"amount":1,"reason":7}]}}', "reason"),
        (b'{"data":{"credits":[],"lastCreditEntry":5}}', "cursor"),
    ],
)
def test_unexpected_shapes_are_invalid_responses(body: bytes, what: str) -> None:
    with pytest.raises(InvalidResponseError, match=what) as info:
        read(read_credits_page, GET, ok(body))
    assert info.value.body == body


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-03-01T12:00:00.000Z", datetime(2024, 3, 1, 12, tzinfo=timezone.utc)),
        ("2024-03-01T12:00:00.1234567+00:00", datetime(2024, 3, 1, 12, 0, 0, 123456, timezone.utc)),
        ("2024-03-01T12:00:00.5z", datetime(2024, 3, 1, 12, 0, 0, 500000, timezone.utc)),
        ("2024-03-01T12:00:00", datetime(2024, 3, 1, 12, tzinfo=timezone.utc)),
        (1709294400000, datetime(2024, 3, 1, 12, tzinfo=timezone.utc)),
        (Decimal("1709294400000.5"), datetime(2024, 3, 1, 12, 0, 0, 500, timezone.utc)),
    ],
)
def test_timestamps(value: object, expected: datetime) -> None:
    parsed = structure_datetime(value)
    assert parsed == expected
    assert parsed.tzinfo is not None


def test_epoch_out_of_range_is_an_error() -> None:
    with pytest.raises(ValueError, match="out of range"):
        structure_datetime(10**30)


@pytest.mark.parametrize(("entry_id", "expected"), [("cr_1", "cr_1"), (17, "17"), (None, None)])
def test_entry_ids_are_typed(entry_id: object, expected: str | None) -> None:
    page = read(read_credits_page, GET, ok(_page_of({"id": entry_id, "amount": 1})))
    assert page.credits[0].id == expected
    with pytest.raises(InvalidResponseError, match="id"):
        read(read_credits_page, GET, ok(_page_of({"id": [1], "amount": 1})))


def _page_of(*entries: object) -> bytes:
    return json.dumps({"message": "ok", "data": {"credits": list(entries)}}).encode()


def test_the_credit_hook_fills_every_field_of_credit() -> None:
    """Fails when Credit gains a field the converter's hook does not fill."""
    entry = {"id": "c1", "amount": Decimal("1.5"), "createdAt": "2024-03-01T12:00:00Z"}
    credit = converter.structure(entry, Credit)
    for field in attrs.fields(Credit):
        getattr(credit, field.name)  # an unfilled slot raises AttributeError
    assert structure_credits([entry]) == (credit,)


def test_converter_is_the_one_place_for_models() -> None:
    assert converter.structure({"amount": "1.50"}, Credit).amount == Decimal("1.50")
    assert converter.structure("3.25", Decimal) == Decimal("3.25")


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (429, RateLimitError),
        (500, ServerError),
        (503, ServerError),
        (302, APIStatusError),
        (418, APIStatusError),
    ],
)
def test_status_errors_carry_the_server_message(
    status: int, error_class: type[APIStatusError]
) -> None:
    body = b'{"message":"Amount cannot be zero","data":{"field":"amount"}}'
    with pytest.raises(error_class) as info:
        read(read_credits_page, GET, Response(status, "X", {}, body))
    error = info.value
    assert type(error) is error_class
    assert (error.status, error.message, error.data) == (
        status,
        "Amount cannot be zero",
        {"field": "amount"},
    )
    assert f"HTTP {status}" in str(error)
    assert "Amount cannot be zero" in str(error)
    assert error.method == "GET"
    assert error.url == str(GET.url)


def test_html_error_page_gives_a_readable_message() -> None:
    body = (
        b"<html><head><title>502 Bad Gateway</title></head><body>" + b"x" * 500 + b"</body></html>"
    )
    with pytest.raises(ServerError) as info:
        read(read_credits_page, GET, Response(502, "Bad Gateway", {}, body))
    message = info.value.message
    assert message.startswith("HTTP 502 Bad Gateway: 502 Bad Gateway")
    assert "<" not in message
    assert len(message) < 340
    assert info.value.data is None
    assert info.value.outcome_unknown is False


NGINX_502 = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
    + b"<!-- a padding to disable MSIE and Chrome friendly error page -->\r\n"
    * 6
)


@pytest.mark.parametrize("cut", [len(NGINX_502), 200, 180, 170])
def test_no_comment_script_or_style_of_an_html_page_reaches_the_message(cut: int) -> None:
    # A body cut short (a size limit) may end inside a comment or a tag.
    body = NGINX_502[:cut] if cut < len(NGINX_502) else NGINX_502
    page = b"<style>h1{color:red}</style><script>var k='x';</script>" + body
    with pytest.raises(ServerError) as info:
        read(read_credits_page, GET, Response(502, "Bad Gateway", {}, page))
    message = info.value.message
    assert message == "HTTP 502 Bad Gateway: 502 Bad Gateway 502 Bad Gateway nginx"


def test_write_5xx_outcome_is_unknown_and_says_so() -> None:
    with pytest.raises(ServerError) as info:
        read(read_credit_result, POST, Response(500, "", {}, b'{"message":"boom","data":{}}'))
    assert info.value.outcome_unknown is True
    assert "may have been applied" in str(info.value)


def test_rate_limit_reads_retry_after() -> None:
    with pytest.raises(RateLimitError) as info:
        read(read_credit_result, POST, Response(429, "", {"Retry-After": "3"}, b"{}"))
    assert info.value.retry_after == 3.0
    assert "retry_after=3.0" in repr(info.value)


def test_echoed_key_is_scrubbed_everywhere() -> None:
    body = (
        b'{"message":"bad key sk_live_SECRET_123","data":{"key":"sk_live_SECRET_123",'
        b'"list":["sk_live_SECRET_123"]}}'
    )
    response = Response(400, "", {"X-Echo": KEY}, body)
    with pytest.raises(BadRequestError) as info:
        read(read_credits_page, GET, response)
    error = info.value
    for text in (str(error), repr(error), error.message, repr(error.data), repr(error.headers)):
        assert KEY not in text
    assert KEY.encode() not in error.body
    assert "[redacted]" in error.message


def test_write_result() -> None:
    result = read(
        read_credit_result, POST, ok(b'{"message":"Credit created","data":{"amount":5.10}}', 201)
    )
    assert result.message == "Credit created"
    assert result.data == {"amount": Decimal("5.10")}
    with pytest.raises(InvalidResponseError):
        read(read_credit_result, POST, ok(b"created", 201))
