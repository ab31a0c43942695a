"""Tests of the sandbox server itself, driven by a plain aiohttp client (not the SDK)."""

import asyncio
import json
import time
from collections.abc import AsyncIterator, Mapping
from decimal import Decimal
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import attrs
import pytest
from yarl import URL

from inveterate_async.testing import ManualClock, RecordedRequest, Sandbox

KEY = {"X-Inveterate-Api-Key": "test-key"}
JSON_KEY = {**KEY, "Content-Type": "application/json"}
SPECIAL_IDS = ["42", "a/b", "what?x=1", "hash#tag", "..", ".", "with space", "ünïcødé 🎁", "100%"]


def segment(customer_id: str) -> str:
    """Encode an id as one path segment, dots included (a raw '..' is a dot segment)."""
    return quote(customer_id, safe="").replace(".", "%2E")


def credits_url(sandbox: Sandbox, customer_id: str, query: str = "") -> URL:
    url = f"{sandbox.base_url}/admin/members/{segment(customer_id)}/credits"
    return URL(f"{url}?{query}" if query else url, encoded=True)


def raw_url(sandbox: Sandbox, raw_path: str) -> URL:
    return URL(f"http://127.0.0.1:{sandbox.port}{raw_path}", encoded=True)


def page_query(**params: str) -> str:
    return urlencode(params, quote_via=quote)


def loads(text: str) -> Any:
    return json.loads(text, parse_float=Decimal, parse_int=Decimal)


async def fetch(
    http: aiohttp.ClientSession,
    url: URL,
    *,
    method: str = "GET",
    headers: Mapping[str, str] = KEY,
    body: bytes | None = None,
) -> tuple[int, str, aiohttp.ClientResponse]:
    async with http.request(method, url, headers=headers, data=body) as response:
        return response.status, await response.text(), response


async def get_page(
    http: aiohttp.ClientSession, sandbox: Sandbox, customer_id: str, query: str = ""
) -> tuple[int, Any]:
    status, text, _ = await fetch(http, credits_url(sandbox, customer_id, query))
    return status, loads(text)


async def post_credit(
    http: aiohttp.ClientSession,
    sandbox: Sandbox,
    customer_id: str,
    body: bytes,
    headers: Mapping[str, str] = JSON_KEY,
) -> tuple[int, str]:
    url = credits_url(sandbox, customer_id)
    status, text, _ = await fetch(http, url, method="POST", headers=headers, body=body)
    return status, text


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox() as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


# --- lifecycle ---------------------------------------------------------------------------


async def test_address_is_unavailable_before_start() -> None:
    server = Sandbox()
    with pytest.raises(RuntimeError):
        _ = server.base_url
    with pytest.raises(RuntimeError):
        _ = server.port


async def test_start_binds_localhost_on_a_free_port(http: aiohttp.ClientSession) -> None:
    server = Sandbox()
    assert await server.start() is server
    try:
        assert server.port > 0
        assert server.base_url == f"http://127.0.0.1:{server.port}/v2.0"
        with pytest.raises(RuntimeError):
            await server.start()
        status, _ = await get_page(http, server, "42")
        assert status == 200
    finally:
        await server.close()
    await server.close()
    with pytest.raises(aiohttp.ClientConnectionError):
        await get_page(http, server, "42")


async def test_two_sandboxes_get_different_ports() -> None:
    async with Sandbox() as first, Sandbox() as second:
        assert first.port != second.port


async def test_ipv6_host_is_bracketed_in_base_url(http: aiohttp.ClientSession) -> None:
    async with Sandbox(host="::1") as server:
        assert server.base_url == f"http://[::1]:{server.port}/v2.0"
        url = URL(f"{server.base_url}/admin/members/1/credits")
        status, _, _ = await fetch(http, url)
        assert status == 200


async def test_start_failure_leaves_sandbox_stopped() -> None:
    async with Sandbox() as taken:
        server = Sandbox(port=taken.port)
        with pytest.raises(OSError):  # noqa: PT011 - errno text varies by platform
            await server.start()
        with pytest.raises(RuntimeError):
            _ = server.base_url
        await server.close()


@pytest.mark.parametrize("kwargs", [{"default_limit": 0}, {"latency": -1.0}])
def test_constructor_rejects_bad_settings(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - any message
        Sandbox(**kwargs)


# --- routing and auth --------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw_path",
    [
        "/",
        "/v2.0/admin/members/42",
        "/v2.0/admin/members//credits",
        "/v2.0/admin/members/a/b/credits",
        "/v2.0/admin/members/../credits",
        "/v2.0/admin/members/./credits",
        "/v2.0/admin/members/42/credits/extra",
        "/v1/admin/members/42/credits",
    ],
)
async def test_other_paths_are_404_json(
    sandbox: Sandbox, http: aiohttp.ClientSession, raw_path: str
) -> None:
    status, text, response = await fetch(http, raw_url(sandbox, raw_path))
    assert status == 404
    assert response.content_type == "application/json"
    assert json.loads(text) == {"message": "Not found", "data": {}}
    assert sandbox.requests[-1].customer_id is None


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
async def test_other_methods_are_405(
    sandbox: Sandbox, http: aiohttp.ClientSession, method: str
) -> None:
    status, text, response = await fetch(http, credits_url(sandbox, "42"), method=method)
    assert status == 405
    assert response.headers["Allow"] == "GET, POST"
    assert json.loads(text) == {"message": "Method not allowed", "data": {}}


@pytest.mark.parametrize(
    "headers",
    [{}, {"X-Inveterate-Api-Key": "wrong-secret"}, {"X-Inveterate-Api-Key": "TEST-KEY"}],
)
@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_bad_api_key_is_400_without_echo(
    sandbox: Sandbox, http: aiohttp.ClientSession, headers: dict[str, str], method: str
) -> None:
    sandbox.add_credits("42", ["1.00"])
    all_headers = {**headers, "Content-Type": "application/json"}
    url = credits_url(sandbox, "42")
    status, text, _ = await fetch(
        http, url, method=method, headers=all_headers, body=b'{"amount": 1}'
    )
    assert status == 400
    assert json.loads(text) == {"message": "Invalid API key", "data": {}}
    assert "wrong-secret" not in text
    assert len(sandbox.ledger("42")) == 1


async def test_api_key_header_name_is_case_insensitive_and_key_configurable(
    http: aiohttp.ClientSession,
) -> None:
    async with Sandbox(api_key="s3cret") as server:
        url = credits_url(server, "42")
        status, _, _ = await fetch(http, url, headers={"x-inveterate-api-key": "s3cret"})
        assert status == 200
        assert server.api_key == "s3cret"
        server.api_key = "rotated"
        status, _, _ = await fetch(http, url, headers={"x-inveterate-api-key": "s3cret"})
        assert status == 400


@pytest.mark.parametrize("customer_id", SPECIAL_IDS)
async def test_ids_are_one_percent_encoded_segment(
    sandbox: Sandbox, http: aiohttp.ClientSession, customer_id: str
) -> None:
    sandbox.add_credits(customer_id, ["3.00"])
    status, body = await get_page(http, sandbox, customer_id)
    assert status == 200
    assert [entry["amount"] for entry in body["data"]["credits"]] == [Decimal("3.00")]
    status, _ = await post_credit(http, sandbox, customer_id, b'{"amount": 2}')
    assert status == 201
    assert sandbox.balance(customer_id) == Decimal("5.00")
    recorded = sandbox.requests[-1]
    assert recorded.customer_id == customer_id
    assert recorded.raw_path == f"/v2.0/admin/members/{segment(customer_id)}/credits"


# --- add_credits, ledger, balance --------------------------------------------------------


def test_add_credits_builds_entries_with_running_balance() -> None:
    sandbox = Sandbox()
    created = sandbox.add_credits(
        "42",
        [
            Decimal("10.10"),
            "0.1",
            5,
            {"amount": "-2.50", "note": "Merci — fidélité", "reason": "redemption"},
            {"amount": 1, "createdAt": "2023-01-01T00:00:00.000Z"},
        ],
    )
    assert created == sandbox.ledger("42")
    assert created[0] == {
        "id": "cr_000001",
        "amount": Decimal("10.10"),
        "createdAt": "2024-03-01T12:00:00.000Z",
        "newBalance": Decimal("10.10"),
        "reason": "manual adjustment",
        "note": None,
    }
    assert [entry["id"] for entry in created] == [f"cr_00000{n}" for n in range(1, 6)]
    assert [entry["createdAt"] for entry in created] == [
        "2024-03-01T12:00:00.000Z",
        "2024-03-01T12:01:00.000Z",
        "2024-03-01T12:02:00.000Z",
        "2024-03-01T12:03:00.000Z",
        "2023-01-01T00:00:00.000Z",
    ]
    assert [str(entry["newBalance"]) for entry in created] == [
        "10.10",
        "10.20",
        "15.20",
        "12.70",
        "13.70",
    ]
    assert created[3]["reason"] == "redemption"
    assert created[3]["note"] == "Merci — fidélité"
    assert sandbox.balance("42") == Decimal("13.70")
    assert sandbox.balance(42) == Decimal("13.70")


def test_clock_and_ids_are_shared_by_all_members() -> None:
    sandbox = Sandbox()
    sandbox.add_credits("a", ["1"])
    (entry,) = sandbox.add_credits("b", ["1"])
    assert entry["id"] == "cr_000002"
    assert entry["createdAt"] == "2024-03-01T12:01:00.000Z"


def test_unknown_member_is_empty() -> None:
    sandbox = Sandbox()
    assert sandbox.ledger("nobody") == []
    assert sandbox.balance("nobody") == Decimal(0)
    assert isinstance(sandbox.balance("nobody"), Decimal)


def test_ledger_returns_copies() -> None:
    sandbox = Sandbox()
    created = sandbox.add_credits("42", ["1.00"])
    created[0]["amount"] = Decimal(999)
    sandbox.ledger("42")[0]["note"] = "changed"
    sandbox.ledger("42").clear()
    assert sandbox.ledger("42")[0]["amount"] == Decimal("1.00")
    assert sandbox.ledger("42")[0]["note"] is None


@pytest.mark.parametrize(
    ("entry", "error"),
    [
        (1.5, TypeError),
        (True, TypeError),
        (None, TypeError),
        ({"amount": 0.1}, TypeError),
        ({"amount": "1", "note": 5}, TypeError),
        ({"amount": "1", "reason": None, "createdAt": 3}, TypeError),
        ("abc", ValueError),
        ("", ValueError),
        (0, ValueError),
        ("0.00", ValueError),
        ("-0", ValueError),
        ("NaN", ValueError),
        (Decimal("Infinity"), ValueError),
        ({"note": "no amount"}, ValueError),
        ({"amount": "1", "colour": "red"}, ValueError),
        ("1E+60", ValueError),  # exact sum with the existing 1.00 needs more than 50 digits
    ],
)
def test_add_credits_rejects_bad_entries_atomically(entry: Any, error: type[Exception]) -> None:
    sandbox = Sandbox()
    sandbox.add_credits("42", ["1.00"])
    with pytest.raises(error):
        sandbox.add_credits("42", ["2.00", entry])
    assert [e["amount"] for e in sandbox.ledger("42")] == [Decimal("1.00")]
    assert sandbox.add_credits("42", ["3.00"])[0]["id"] == "cr_000002"


@pytest.mark.parametrize("entries", ["10.00", {"amount": "1"}])
def test_add_credits_needs_an_iterable_of_credits(entries: Any) -> None:
    with pytest.raises(TypeError):
        Sandbox().add_credits("42", entries)


async def test_default_cursor_keeps_a_non_z_created_at(
    sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    sandbox.add_credits("42", [{"amount": 1, "createdAt": "2024-01-01T00:00:00.000+01:00"}, 2])
    _, body = await get_page(http, sandbox, "42", "limit=1")
    assert body["data"]["lastCreditEntry"] == (
        '{"pk":"member#42","sk":"2024-01-01T00:00:00.000+01:00#cr_000001"}'
    )


@pytest.mark.parametrize(("customer_id", "error"), [(True, TypeError), ("", ValueError)])
def test_bad_customer_ids_are_rejected(customer_id: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        Sandbox().add_credits(customer_id, ["1"])


# --- GET ---------------------------------------------------------------------------------


async def test_get_empty_ledger(sandbox: Sandbox, http: aiohttp.ClientSession) -> None:
    status, text, response = await fetch(http, credits_url(sandbox, "42"))
    assert status == 200
    assert response.content_type == "application/json"
    assert response.charset == "utf-8"
    assert json.loads(text) == {
        "message": "Credits retrieved",
        "data": {"credits": [], "lastCreditEntry": None},
    }


async def test_get_writes_money_with_exact_digits(
    sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    sandbox.add_credits("42", ["10.10", Decimal("0.1"), {"amount": 7, "note": "Merci — fidélité"}])
    status, text, _ = await fetch(http, credits_url(sandbox, "42"))
    assert status == 200
    assert '"amount":10.10,' in text
    assert '"amount":0.1,' in text
    assert '"newBalance":10.20,' in text
    assert '"amount":7,' in text
    assert '"newBalance":17.20,' in text
    assert "Merci — fidélité" in text  # UTF-8, not \u escapes
    assert loads(text)["data"]["credits"] == sandbox.ledger("42")


async def test_pagination_walks_the_ledger_with_encoded_cursors(
    sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    sandbox.add_credits("42", [str(n) for n in range(1, 8)])
    pages: list[list[str]] = []
    query = page_query(limit="3")
    while True:
        status, body = await get_page(http, sandbox, "42", query)
        assert status == 200
        pages.append([entry["id"] for entry in body["data"]["credits"]])
        cursor = body["data"]["lastCreditEntry"]
        if cursor is None:
            break
        query = page_query(limit="3", lastCreditEntry=cursor)
    assert [len(page) for page in pages] == [3, 3, 1]
    assert [i for page in pages for i in page] == [entry["id"] for entry in sandbox.ledger("42")]
    assert sandbox.requests[1].cursor == (
        '{"pk":"member#42","sk":"2024-03-01T12:02:00.000+00:00#cr_000003"}'
    )
    assert "%2B00%3A00" in sandbox.requests[1].raw_path


async def test_cursor_is_null_when_page_reaches_the_end(
    sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    sandbox.add_credits("42", ["1", "2", "3", "4"])
    _, first = await get_page(http, sandbox, "42", "limit=2")
    cursor = first["data"]["lastCreditEntry"]
    _, second = await get_page(http, sandbox, "42", page_query(limit="2", lastCreditEntry=cursor))
    assert [e["id"] for e in second["data"]["credits"]] == ["cr_000003", "cr_000004"]
    assert second["data"]["lastCreditEntry"] is None


async def test_cursor_stays_valid_and_sees_new_entries(
    sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    sandbox.add_credits("42", ["1", "2", "3"])
    _, first = await get_page(http, sandbox, "42", "limit=1")
    query = page_query(limit="5", lastCreditEntry=first["data"]["lastCreditEntry"])
    _, again = await get_page(http, sandbox, "42", query)
    sandbox.add_credits("42", ["4"])
    _, later = await get_page(http, sandbox, "42", query)
    assert [e["id"] for e in again["data"]["credits"]] == ["cr_000002", "cr_000003"]
    assert [e["id"] for e in later["data"]["credits"]] == ["cr_000002", "cr_000003", "cr_000004"]


async def test_default_limit_applies_without_limit(http: aiohttp.ClientSession) -> None:
    async with Sandbox(default_limit=2) as server:
        server.add_credits("42", ["1", "2", "3"])
        _, body = await get_page(http, server, "42")
        assert len(body["data"]["credits"]) == 2
        assert body["data"]["lastCreditEntry"] is not None


@pytest.mark.parametrize(("limit", "count"), [("003", 3), ("99999999999999999999999999", 5)])
async def test_large_and_zero_padded_limits(
    sandbox: Sandbox, http: aiohttp.ClientSession, limit: str, count: int
) -> None:
    sandbox.add_credits("42", ["1", "2", "3", "4", "5"])
    status, body = await get_page(http, sandbox, "42", f"limit={limit}")
    assert status == 200
    assert len(body["data"]["credits"]) == count


@pytest.mark.parametrize(
    "query",
    ["limit=0", "limit=-1", "limit=abc", "limit=", "limit", "limit=1.5", "limit=1e3",
     "limit=%205", "limit=+5", "limit=%2B5", "limit=0x10", "limit=%D9%A3", "limit=000"],
)  # fmt: skip
async def test_invalid_limit_is_400(
    sandbox: Sandbox, http: aiohttp.ClientSession, query: str
) -> None:
    status, body = await get_page(http, sandbox, "42", query)
    assert status == 400
    assert body == {"message": "limit must be a positive integer", "data": {}}


@pytest.mark.parametrize("query", ["limit=1&limit=1", "lastCreditEntry=a&lastCreditEntry=a", "x&x"])
async def test_repeated_query_parameters_are_400(
    sandbox: Sandbox, http: aiohttp.ClientSession, query: str
) -> None:
    status, body = await get_page(http, sandbox, "42", query)
    assert status == 400
    assert body["data"] == {}
    assert "repeated" in body["message"]


async def test_unknown_query_parameters_are_ignored(
    sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    status, _ = await get_page(http, sandbox, "42", "sort=desc")
    assert status == 200


async def issued_cursor(http: aiohttp.ClientSession, sandbox: Sandbox, customer_id: str) -> Any:
    sandbox.add_credits(customer_id, ["1", "2"])
    _, body = await get_page(http, sandbox, customer_id, "limit=1")
    return body["data"]["lastCreditEntry"]


@pytest.mark.parametrize(
    "make_query",
    [
        pytest.param(lambda cursor: "lastCreditEntry=", id="empty"),
        pytest.param(lambda cursor: "lastCreditEntry=nonsense", id="unknown"),
        pytest.param(lambda cursor: f"lastCreditEntry={cursor}", id="unencoded"),
        pytest.param(lambda cursor: f"lastCreditEntry={quote(cursor, safe='+')}", id="raw-plus"),
        pytest.param(
            lambda cursor: f"lastCreditEntry={quote(quote(cursor, safe=''), safe='')}",
            id="double-encoded",
        ),
        pytest.param(lambda cursor: f"lastCreditEntry={quote(cursor[:-1], safe='')}", id="cut"),
    ],
)
async def test_invalid_cursor_is_400(
    sandbox: Sandbox, http: aiohttp.ClientSession, make_query: Any
) -> None:
    cursor = await issued_cursor(http, sandbox, "42")
    status, body = await get_page(http, sandbox, "42", make_query(cursor))
    assert status == 400
    assert body == {"message": "Invalid lastCreditEntry", "data": {}}


async def test_cursor_of_another_member_is_400(
    sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    cursor = await issued_cursor(http, sandbox, "42")
    sandbox.add_credits("43", ["1", "2"])
    status, body = await get_page(http, sandbox, "43", page_query(lastCreditEntry=cursor))
    assert status == 400
    assert body["message"] == "Invalid lastCreditEntry"


async def test_query_is_decoded_strictly_from_the_raw_path(
    sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    await get_page(http, sandbox, "42", "a=%2B+b&empty=&lastCreditEntry=%7B%22x%22%7D")
    recorded = sandbox.requests[-1]
    assert recorded.query == {"a": ["+ b"], "empty": [""], "lastCreditEntry": ['{"x"}']}
    assert recorded.cursor == '{"x"}'


# --- cursor_factory ----------------------------------------------------------------------


async def test_string_cursor_factory(http: aiohttp.ClientSession) -> None:
    seen: list[tuple[str, Mapping[str, Any]]] = []

    def factory(customer_id: str, entry: Mapping[str, Any]) -> str:
        seen.append((customer_id, entry))
        return f"after {entry['id']}+"

    async with Sandbox(cursor_factory=factory) as server:
        server.add_credits("42", ["1", "2", "3"])
        _, first = await get_page(http, server, "42", "limit=2")
        assert first["data"]["lastCreditEntry"] == "after cr_000002+"
        assert seen == [("42", server.ledger("42")[1])]
        query = page_query(lastCreditEntry="after cr_000002+")
        status, second = await get_page(http, server, "42", query)
        assert status == 200
        assert [e["id"] for e in second["data"]["credits"]] == ["cr_000003"]


async def test_mapping_cursor_factory(http: aiohttp.ClientSession) -> None:
    def factory(customer_id: str, entry: Mapping[str, Any]) -> Mapping[str, Any]:
        return {"member": customer_id, "id": entry["id"], "n": 1}

    async with Sandbox(cursor_factory=factory) as server:
        server.add_credits("ü", ["1", "2"])
        status, text, _ = await fetch(http, credits_url(server, "ü", "limit=1"))
        assert status == 200
        assert '"lastCreditEntry":{"member":"ü","id":"cr_000001","n":1}' in text
        cursor = json.loads(text)["data"]["lastCreditEntry"]
        spaced = page_query(lastCreditEntry=json.dumps(cursor))
        status, _ = await get_page(http, server, "ü", spaced)
        assert status == 400
        compact = json.dumps(cursor, separators=(",", ":"))
        assert "\\u00fc" in compact
        status, body = await get_page(http, server, "ü", page_query(lastCreditEntry=compact))
        assert status == 200
        assert [e["id"] for e in body["data"]["credits"]] == ["cr_000002"]


# --- POST --------------------------------------------------------------------------------


async def test_post_creates_a_credit(sandbox: Sandbox, http: aiohttp.ClientSession) -> None:
    # 2026-11-02T10:00:00.250Z: a POSTed credit is stamped with the clock, to the millisecond.
    sandbox.clock = ManualClock(1793613600.25)
    sandbox.add_credits("42", ["5.00"])
    body = '{"amount": 10.10, "note": "Merci — fidélité", "force": true}'.encode()
    headers = {**KEY, "Content-Type": "application/json; charset=utf-8"}
    status, text = await post_credit(http, sandbox, "42", body, headers)
    assert status == 201
    assert '"amount":10.10,' in text
    assert '"newBalance":15.10,' in text
    entry = {
        "id": "cr_000002",
        "amount": Decimal("10.10"),
        "createdAt": "2026-11-02T10:00:00.250Z",
        "newBalance": Decimal("15.10"),
        "reason": "api",
        "note": "Merci — fidélité",
    }
    assert loads(text) == {"message": "Credit created", "data": entry}
    assert sandbox.ledger("42")[-1] == entry


@pytest.mark.parametrize(
    ("amount", "written"), [("5", "5"), ("-2.50", "-2.50"), ("1E+2", "1E+2"), ("0.1", "0.1")]
)
async def test_post_keeps_amount_digits(
    sandbox: Sandbox, http: aiohttp.ClientSession, amount: str, written: str
) -> None:
    status, text = await post_credit(http, sandbox, "42", f'{{"amount": {amount}}}'.encode())
    assert status == 201
    assert f'"amount":{written},' in text
    assert sandbox.ledger("42")[0]["amount"] == Decimal(amount)
    assert sandbox.ledger("42")[0]["note"] is None


@pytest.mark.parametrize(
    ("content_type", "body", "message"),
    [
        ("text/plain", b'{"amount": 1}', "Content-Type must be application/json"),
        ("application/x-www-form-urlencoded", b"amount=1", "Content-Type must be application/json"),
        (None, b'{"amount": 1}', "Content-Type must be application/json"),
        ("application/json", b"", "Body is not valid JSON"),
        ("application/json", b"{amount: 1}", "Body is not valid JSON"),
        ("application/json", b'{"amount": 1,}', "Body is not valid JSON"),
        ("application/json", b'{"amount": 1, "note": "\xff"}', "Body is not valid JSON"),
        ("application/json", b'\xef\xbb\xbf{"amount": 1}', "Body is not valid JSON"),
        ("application/json", b'{"amount": NaN}', "Body is not valid JSON"),
        ("application/json", b'{"amount": Infinity}', "Body is not valid JSON"),
        ("application/json", b'{"amount": -Infinity}', "Body is not valid JSON"),
        ("application/json", b"[1]", "Body must be a JSON object"),
        ("application/json", b"null", "Body must be a JSON object"),
        ("application/json", b"10", "Body must be a JSON object"),
        ("application/json", b"{}", "amount is required"),
        ("application/json", b'{"note": "x"}', "amount is required"),
        ("application/json", b'{"amount": "10.00"}', "amount must be a number"),
        ("application/json", b'{"amount": true}', "amount must be a number"),
        ("application/json", b'{"amount": null}', "amount must be a number"),
        ("application/json", b'{"amount": [1]}', "amount must be a number"),
        ("application/json", b'{"amount": 0}', "amount can't be zero"),
        ("application/json", b'{"amount": -0.00}', "amount can't be zero"),
        ("application/json", b'{"amount": 0e5}', "amount can't be zero"),
        ("application/json", b'{"amount": 1, "note": 5}', "note must be a string"),
        ("application/json", b'{"amount": 1, "note": null}', "note must be a string"),
        ("application/json", b'{"amount": 1, "force": "yes"}', "force must be a boolean"),
        ("application/json", b'{"amount": 1, "force": 1}', "force must be a boolean"),
        ("application/json", b'{"amount": 1, "reason": "x"}', "Unknown properties: reason"),
        ("application/json", b'{"amount": 1e60}', "amount is out of range"),
    ],
)
async def test_invalid_post_is_400_and_applies_nothing(
    sandbox: Sandbox,
    http: aiohttp.ClientSession,
    content_type: str | None,
    body: bytes,
    message: str,
) -> None:
    sandbox.add_credits("42", ["1.00"])
    headers = dict(KEY) if content_type is None else {**KEY, "Content-Type": content_type}
    status, text = await post_credit(http, sandbox, "42", body, headers)
    assert status == 400
    assert json.loads(text) == {"message": message, "data": {}}
    assert len(sandbox.ledger("42")) == 1
    assert sandbox.requests[-1].body == body


# --- fail_next ---------------------------------------------------------------------------


async def test_fail_next_default_fault(sandbox: Sandbox, http: aiohttp.ClientSession) -> None:
    sandbox.fail_next()
    status, text, response = await fetch(http, credits_url(sandbox, "42"))
    assert status == 500
    assert response.content_type == "application/json"
    assert "Retry-After" not in response.headers
    assert json.loads(text) == {"message": "Injected failure (HTTP 500)", "data": {}}
    status, _ = await get_page(http, sandbox, "42")
    assert status == 200


@pytest.mark.parametrize(
    ("retry_after", "header"),
    [(2, "2"), (0.5, "0.5"), ("Wed, 21 Oct 2015 07:28:00 GMT", "Wed, 21 Oct 2015 07:28:00 GMT")],
)
async def test_fail_next_retry_after(
    sandbox: Sandbox, http: aiohttp.ClientSession, retry_after: float | str, header: str
) -> None:
    sandbox.fail_next(429, retry_after=retry_after)
    status, text, response = await fetch(http, credits_url(sandbox, "42"))
    assert status == 429
    assert response.headers["Retry-After"] == header
    assert json.loads(text)["message"] == "Injected failure (HTTP 429)"


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        ("<html>Bad gateway</html>", "text/plain", "<html>Bad gateway</html>"),
        (b"\x00oops", "text/plain", "\x00oops"),
        ({"message": "busy", "data": {"amount": Decimal("0.10")}}, "application/json",
         '{"message":"busy","data":{"amount":0.10}}'),
    ],
)  # fmt: skip
async def test_fail_next_custom_body(
    sandbox: Sandbox,
    http: aiohttp.ClientSession,
    body: bytes | str | Mapping[str, Any],
    content_type: str,
    expected: str,
) -> None:
    sandbox.fail_next(502, body=body)
    status, text, response = await fetch(http, credits_url(sandbox, "42"))
    assert status == 502
    assert response.content_type == content_type
    assert text == expected


async def test_fail_next_can_fake_a_malformed_success(
    sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    sandbox.fail_next(200, body="not json")
    status, text, _ = await fetch(http, credits_url(sandbox, "42"))
    assert (status, text) == (200, "not json")


async def test_fail_next_times_and_stacking(sandbox: Sandbox, http: aiohttp.ClientSession) -> None:
    sandbox.fail_next(503, times=2)
    sandbox.fail_next(502)
    statuses = [(await get_page(http, sandbox, "42"))[0] for _ in range(4)]
    assert statuses == [503, 503, 502, 200]


async def test_fail_next_method_filter(sandbox: Sandbox, http: aiohttp.ClientSession) -> None:
    sandbox.fail_next(500, method="post")
    status, _ = await get_page(http, sandbox, "42")
    assert status == 200
    status, _ = await post_credit(http, sandbox, "42", b'{"amount": 1}')
    assert status == 500
    assert sandbox.ledger("42") == []
    status, _ = await post_credit(http, sandbox, "42", b'{"amount": 1}')
    assert status == 201


async def test_fail_next_customer_filter(sandbox: Sandbox, http: aiohttp.ClientSession) -> None:
    sandbox.fail_next(500, customer_id=7)
    status, _, _ = await fetch(http, raw_url(sandbox, "/elsewhere"))
    assert status == 404
    assert (await get_page(http, sandbox, "8"))[0] == 200
    assert (await get_page(http, sandbox, "7"))[0] == 500
    assert (await get_page(http, sandbox, "7"))[0] == 200


async def test_faults_come_before_auth(sandbox: Sandbox, http: aiohttp.ClientSession) -> None:
    sandbox.fail_next(503)
    status, _, _ = await fetch(http, credits_url(sandbox, "42"), headers={})
    assert status == 503


async def test_fail_next_apply_writes_then_fails(
    sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    sandbox.fail_next(500, apply=True)
    status, text = await post_credit(http, sandbox, "42", b'{"amount": 4.20}')
    assert status == 500
    assert json.loads(text)["message"] == "Injected failure (HTTP 500)"
    assert [entry["amount"] for entry in sandbox.ledger("42")] == [Decimal("4.20")]


async def test_fail_next_disconnect(sandbox: Sandbox, http: aiohttp.ClientSession) -> None:
    sandbox.fail_next(disconnect=True)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await post_credit(http, sandbox, "42", b'{"amount": 1}')
    assert sandbox.ledger("42") == []
    assert [r.method for r in sandbox.requests] == ["POST"]
    status, _ = await post_credit(http, sandbox, "42", b'{"amount": 1}')
    assert status == 201


async def test_fail_next_disconnect_after_apply(
    sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    sandbox.fail_next(disconnect=True, apply=True)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await post_credit(http, sandbox, "42", b'{"amount": 1}')
    assert sandbox.balance("42") == 1


async def test_fail_next_disconnect_get_needs_two_because_aiohttp_retries(
    sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    sandbox.fail_next(disconnect=True, times=2)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await get_page(http, sandbox, "42")
    assert len(sandbox.requests) == 2


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"status": 199}, ValueError),
        ({"status": 600}, ValueError),
        ({"times": 0}, ValueError),
        ({"body": {"amount": Decimal("NaN")}}, ValueError),
        ({"body": {1: "non-str key"}}, TypeError),
    ],
)
def test_fail_next_rejects_bad_arguments(kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        Sandbox().fail_next(**kwargs)


# --- concurrency and recording -----------------------------------------------------------


async def test_latency_and_in_flight_tracking(http: aiohttp.ClientSession) -> None:
    async with Sandbox(latency=0.2) as server:
        task = asyncio.create_task(get_page(http, server, "42"))
        await asyncio.sleep(0.1)
        assert server.in_flight == 1
        await task
        server.latency = 0.05
        await asyncio.gather(*(get_page(http, server, "42") for _ in range(5)))
        assert server.in_flight == 0
        assert server.max_in_flight == 5
        server.reset_stats()
        assert (server.requests, server.max_in_flight) == ([], 0)
        limiter = asyncio.Semaphore(2)

        async def bounded() -> None:
            async with limiter:
                await get_page(http, server, "42")

        await asyncio.gather(*(bounded() for _ in range(6)))
        assert server.max_in_flight == 2
        assert len(server.requests) == 6


async def test_every_request_is_recorded(sandbox: Sandbox, http: aiohttp.ClientSession) -> None:
    sandbox.fail_next(503, method="GET")
    await get_page(http, sandbox, "42", "limit=2")
    await fetch(http, credits_url(sandbox, "42"), headers={})
    await post_credit(http, sandbox, "a/b", b'{"amount": 10.10, "note": "hi"}')
    await fetch(http, raw_url(sandbox, "/nope?x=1"))
    first, unauthorized, post, missing = sandbox.requests
    assert first == RecordedRequest(
        method="GET",
        raw_path="/v2.0/admin/members/42/credits?limit=2",
        customer_id="42",
        query={"limit": ["2"]},
        cursor=None,
        headers=first.headers,
        body=b"",
    )
    assert first.headers["x-inveterate-api-key"] == "test-key"
    assert "X-Inveterate-Api-Key" not in unauthorized.headers
    assert post.method == "POST"
    assert post.customer_id == "a/b"
    assert post.raw_path == "/v2.0/admin/members/a%2Fb/credits"
    assert post.headers["content-type"] == "application/json"
    assert post.json() == {"amount": Decimal("10.10"), "note": "hi"}
    assert (missing.customer_id, missing.query) == (None, {"x": ["1"]})
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        first.method = "POST"  # type: ignore[misc]


# --- seed_members ------------------------------------------------------------------------


def test_seed_members_is_realistic() -> None:
    sandbox = Sandbox()
    ids = sandbox.seed_members(40, credits_per_member=6, prefix="m-")
    assert ids == [f"m-{n}" for n in range(1, 41)]
    entries = [entry for member in ids for entry in sandbox.ledger(member)]
    assert all(len(sandbox.ledger(member)) == 6 for member in ids)
    assert all(entry["amount"] != 0 for entry in entries)
    assert all(entry["amount"].as_tuple().exponent == -2 for entry in entries)
    assert any(entry["amount"] < 0 for entry in entries)
    assert all(entry["reason"] == "redemption" for entry in entries if entry["amount"] < 0)
    assert {entry["reason"] for entry in entries} == {
        "purchase reward",
        "goodwill",
        "redemption",
        "manual adjustment",
        "birthday bonus",
    }
    notes = [entry["note"] for entry in entries if entry["note"] is not None]
    assert 0 < len(notes) < len(entries)
    assert any(not note.isascii() for note in notes)
    for member in ids:
        balance = Decimal(0)
        for entry in sandbox.ledger(member):
            balance += entry["amount"]
            assert entry["newBalance"] == balance >= 0


def test_seed_members_is_deterministic() -> None:
    first, second, other = Sandbox(), Sandbox(), Sandbox()
    ids = first.seed_members(5, seed=7)
    assert ids == second.seed_members(5, seed=7) == ["1", "2", "3", "4", "5"]
    other.seed_members(5, seed=8)
    assert [first.ledger(m) for m in ids] == [second.ledger(m) for m in ids]
    assert [first.ledger(m) for m in ids] != [other.ledger(m) for m in ids]
    assert first.seed_members(0) == []


async def test_seeded_members_are_served(sandbox: Sandbox, http: aiohttp.ClientSession) -> None:
    (member,) = sandbox.seed_members(1, credits_per_member=3)
    status, body = await get_page(http, sandbox, member)
    assert status == 200
    assert body["data"]["credits"] == sandbox.ledger(member)


# --- time: the clock, delayed visibility, slow answers ---------------------------------


async def test_delayed_visibility_applies_at_once_and_shows_later(
    http: aiohttp.ClientSession,
) -> None:
    clock = ManualClock(1_800_000_000.0)
    async with Sandbox(clock=clock, visibility_delay=30, default_limit=2) as server:
        server.add_credits("42", ["1.00", "2.00"])
        status, _ = await post_credit(http, server, "42", b'{"amount": 5.00, "note": "late"}')
        assert status == 201
        # Applied: the balance and the server's own view have it...
        assert server.balance("42") == Decimal("8.00")
        assert [e["note"] for e in server.ledger("42")] == [None, None, "late"]
        # ...but a GET does not show it until the clock has moved 30 s on.
        _, body = await get_page(http, server, "42")
        assert [e["amount"] for e in body["data"]["credits"]] == [1, 2]
        assert body["data"]["lastCreditEntry"] is None  # nothing visible after this page
        clock.advance(29.999)
        _, body = await get_page(http, server, "42")
        assert body["data"]["lastCreditEntry"] is None
        server.add_credits("42", ["3.00"])  # visible at once, after the hidden one
        _, body = await get_page(http, server, "42")
        cursor = body["data"]["lastCreditEntry"]
        _, rest = await get_page(http, server, "42", page_query(lastCreditEntry=cursor))
        assert [e["amount"] for e in rest["data"]["credits"]] == [3]
        await clock.sleep(0.001)
        _, rest = await get_page(http, server, "42", page_query(lastCreditEntry=cursor))
        assert [e["amount"] for e in rest["data"]["credits"]] == [Decimal("5.00"), 3]
        assert rest["data"]["credits"][0]["createdAt"] == "2027-01-15T08:00:00.000Z"


async def test_visibility_delay_can_change_between_requests(
    http: aiohttp.ClientSession,
) -> None:
    clock = ManualClock(1_800_000_000.0)
    async with Sandbox(clock=clock) as server:
        await post_credit(http, server, "42", b'{"amount": 1}')
        server.visibility_delay = 10
        await post_credit(http, server, "42", b'{"amount": 2}')
        _, body = await get_page(http, server, "42")
        assert [e["amount"] for e in body["data"]["credits"]] == [1]
        clock.advance(10)
        _, body = await get_page(http, server, "42")
        assert [e["amount"] for e in body["data"]["credits"]] == [1, 2]


async def test_fail_next_match_picks_the_request(
    sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    sandbox.fail_next(500, match=lambda request: b"second" in request.body)
    first, _ = await post_credit(http, sandbox, "42", b'{"amount": 1, "note": "first"}')
    second, _ = await post_credit(http, sandbox, "42", b'{"amount": 2, "note": "second"}')
    third, _ = await post_credit(http, sandbox, "42", b'{"amount": 3, "note": "second"}')
    assert (first, second, third) == (201, 500, 201)
    assert [e["amount"] for e in sandbox.ledger("42")] == [1, 3]


async def test_fail_next_delay_answers_late_after_applying(
    sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    sandbox.fail_next(201, apply=True, delay=5.0)
    url = credits_url(sandbox, "42")
    with pytest.raises(asyncio.TimeoutError):
        await http.post(
            url, headers=JSON_KEY, data=b'{"amount": 7}', timeout=aiohttp.ClientTimeout(total=0.2)
        )
    assert sandbox.balance("42") == 7  # applied before the client gave up


@pytest.mark.parametrize("kwargs", [{"visibility_delay": -1.0}])
def test_bad_visibility_delay(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="visibility_delay"):
        Sandbox(**kwargs)


def test_fail_next_rejects_a_negative_delay() -> None:
    with pytest.raises(ValueError, match="delay"):
        Sandbox().fail_next(delay=-1)


async def test_manual_clock() -> None:
    clock = ManualClock(100)
    assert clock() == 100.0
    clock.advance(2.5)
    await clock.sleep(1)
    await clock.sleep(-3)
    assert clock() == 103.5
    assert repr(clock) == "ManualClock(103.5)"
    with pytest.raises(ValueError, match="cannot go back"):
        clock.advance(-1)
    assert abs(ManualClock()() - time.time()) < 60
