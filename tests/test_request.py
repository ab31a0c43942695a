"""Request building: URLs, path segments, cursors, amounts, argument checks."""

import json
from decimal import Decimal
from urllib.parse import quote, unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from inveterate_async._http.request import (
    amount_json,
    check_api_key,
    check_base_url,
    create_credit_request,
    credits_page_request,
    credits_page_url,
    cursor_text,
    encode_customer_id,
    encode_query_value,
    list_credits_request,
)

BASE = "https://public.inveterateapi.com/v2.0"
UNRESERVED = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


@pytest.mark.parametrize(
    ("raw", "encoded"),
    [
        ("+", "%2B"),
        ("%", "%25"),
        ("%41", "%2541"),
        ("a&b=c", "a%26b%3Dc"),
        ("#/ ?", "%23%2F%20%3F"),
        ('{"pk":"m#1"}', "%7B%22pk%22%3A%22m%231%22%7D"),
        ("line\nbreak", "line%0Abreak"),
        ("é€", "%C3%A9%E2%82%AC"),
        ("~-._", "~-._"),
    ],
)
def test_query_values_are_encoded_once_byte_for_byte(raw: str, encoded: str) -> None:
    assert encode_query_value(raw) == encoded


@given(st.text())
def test_any_text_encodes_to_unreserved_and_escapes_and_decodes_back(text: str) -> None:
    encoded = encode_query_value(text)
    assert set(encoded.replace("%", "")) <= UNRESERVED | set("ABCDEF")
    assert unquote(encoded, errors="strict") == text


@pytest.mark.parametrize(
    ("customer_id", "segment"),
    [
        (42, "42"),
        ("a/b", "a%2Fb"),
        ("..", "%2E%2E"),
        (".", "%2E"),
        ("a?b#c", "a%3Fb%23c"),
        ("José 1", "Jos%C3%A9%201"),
    ],
)
def test_customer_id_is_one_path_segment(customer_id: object, segment: str) -> None:
    request = list_credits_request(BASE, customer_id, limit=None, cursor=None)
    assert encode_customer_id(customer_id) == segment
    assert request.url.raw_path == f"/v2.0/admin/members/{segment}/credits"
    assert request.url.raw_query_string == ""


@pytest.mark.parametrize("customer_id", [True, False, "", None, 4.2, b"42"])
def test_bad_customer_id_is_refused(customer_id: object) -> None:
    with pytest.raises(ValueError, match="customer_id"):
        encode_customer_id(customer_id)


def test_list_request_carries_limit_and_encoded_cursor() -> None:
    request = list_credits_request(BASE, "7", limit=25, cursor='{"a":"+ %"}')
    assert request.method == "GET"
    assert request.body is None
    assert (
        request.url.raw_query_string == "limit=25&lastCreditEntry=%7B%22a%22%3A%22%2B%20%25%22%7D"
    )


@pytest.mark.parametrize("character", [chr(code) for code in range(128)])
def test_ascii_fast_path_writes_what_quote_writes(character: str) -> None:
    text = f"a{character}b"
    assert text.isascii()
    assert encode_query_value(text) == quote(text, safe="")


@given(st.text())
def test_any_text_encodes_exactly_as_quote(text: str) -> None:
    # ASCII text takes the fast path, anything else quote() itself: the same bytes.
    assert encode_query_value(text) == quote(text, safe="")


@pytest.mark.parametrize(
    ("limit", "cursor", "query"),
    [
        (None, None, ""),
        (25, None, "limit=25"),
        (None, "c#1", "lastCreditEntry=c%231"),
        (25, "c#1", "limit=25&lastCreditEntry=c%231"),
    ],
)
def test_page_url_made_once_takes_each_cursor(
    limit: int | None, cursor: str | None, query: str
) -> None:
    page_url = credits_page_url(BASE, "a/b", limit)
    request = credits_page_request(page_url, cursor)
    assert request.url.raw_path == "/v2.0/admin/members/a%2Fb/credits"
    assert request.url.raw_query_string == query
    expected = f"{BASE}/admin/members/a%2Fb/credits" + (f"?{query}" if query else "")
    assert str(request.url) == expected


@pytest.mark.parametrize("limit", [0, -1, True, 2.5, "10"])
def test_bad_limit_is_refused(limit: object) -> None:
    with pytest.raises(ValueError, match="limit"):
        list_credits_request(BASE, "7", limit=limit, cursor=None)  # type: ignore[arg-type]


def test_object_cursor_becomes_compact_json_text() -> None:
    cursor = {"pk": "member#42", "n": Decimal("1.10"), "i": 3, "u": "é"}
    expected = json.dumps(
        json.loads('{"pk": "member#42", "n": 1.10, "i": 3, "u": "é"}'), separators=(",", ":")
    )
    assert cursor_text(cursor) == expected == '{"pk":"member#42","n":1.1,"i":3,"u":"\\u00e9"}'


@pytest.mark.parametrize("cursor", [None, ""])
def test_empty_cursor_means_none(cursor: object) -> None:
    assert cursor_text(cursor) is None


def test_cursor_of_another_type_is_refused() -> None:
    with pytest.raises(ValueError, match="cursor"):
        cursor_text(12)
    with pytest.raises(TypeError):
        cursor_text({"x": object()})


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        (10, "10"),
        (-3, "-3"),
        (Decimal("10.10"), "10.10"),
        (Decimal("-0.01"), "-0.01"),
        ("12.50", "12.50"),
        ("1e2", "1E+2"),
    ],
)
def test_amount_keeps_its_exact_digits(amount: object, text: str) -> None:
    assert amount_json(amount) == text
    assert json.loads(text, parse_float=Decimal) == Decimal(text)


@pytest.mark.parametrize(
    "amount",
    [
        0,
        Decimal("0.00"),
        "0",
        "-0.0",
        Decimal("NaN"),
        Decimal("Infinity"),
        float("nan"),
        float("inf"),
        True,
        False,
        "ten",
        "1_000",
        " 1",
        "NaN",
        None,
        [1],
    ],
)
def test_bad_amount_is_refused(amount: object) -> None:
    with pytest.raises(ValueError, match="amount"):
        amount_json(amount)


def test_create_body_omits_none_and_keeps_digits() -> None:
    request = create_credit_request(BASE, "42", Decimal("10.10"), note=None, force=None)
    assert request.body == b'{"amount":10.10}'
    request = create_credit_request(BASE, "42", "-5.00", note='Merci "é"', force=True)
    assert json.loads(request.body or b"", parse_float=Decimal) == {
        "amount": Decimal("-5.00"),
        "note": 'Merci "é"',
        "force": True,
    }
    assert request.method == "POST"


@pytest.mark.parametrize(("note", "force"), [(3, None), (None, 1), (None, "yes")])
def test_bad_note_or_force_is_refused(note: object, force: object) -> None:
    with pytest.raises(ValueError, match=r"note|force"):
        create_credit_request(BASE, "42", 1, note=note, force=force)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "url",
    [
        "https://api.example.com/v2.0",
        "http://localhost:8080/v2.0",
        "http://127.0.0.2:9/v2.0/",
        "http://[::1]:9/v2.0",
    ],
)
def test_base_url_accepted(url: str) -> None:
    assert check_base_url(url) == url.rstrip("/")


@pytest.mark.parametrize(
    "url",
    [
        "http://api.example.com/v2.0",
        "http://10.0.0.1/v2.0",
        "ftp://localhost/v2.0",
        "https:///v2.0",
        "https://user:pw@api.example.com/v2.0",
        "https://api.example.com/v2.0?x=1",
        "",
        "not a url",
    ],
)
def test_base_url_refused(url: str) -> None:
    with pytest.raises(ValueError, match="base_url"):
        check_base_url(url)


@pytest.mark.parametrize("key", ["", None, 5, " sk_live_9f", "sk_live_9f\n", "sk_live\x00b"])
def test_bad_api_key_is_refused_without_echoing_it(key: object) -> None:
    with pytest.raises(ValueError, match="api_key") as info:
        check_api_key(key)
    if isinstance(key, str) and key.strip():
        assert key.strip() not in str(info.value)
