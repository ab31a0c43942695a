"""What the SDK hands aiohttp, seen through aioresponses.

Real-server tests see a request after aiohttp and the server have added to it; here
each call is recorded as the SDK made it, so these tests pin down what only it decides:
the exact header set of each request (own session, and a lent one, where the SDK passes
its headers with every request), the exact body bytes, and how many times a request is
sent after each failure aioresponses can simulate (a write exactly once, a read again).
"""

from __future__ import annotations

import asyncio
import re
from decimal import Decimal
from typing import Any

import aiohttp
import pytest

from inveterate_async import (
    APIConnectionError,
    APITimeoutError,
    InvalidResponseError,
    InveterateClient,
    InveterateError,
    RateLimitError,
    ServerError,
    __version__,
)

BASE = "https://api.example.com/v2.0"
KEY = "sk_live_shape_key"
ANY_URL = re.compile(r"^https://api\.example\.com/")
PAGE = {"message": "ok", "data": {"credits": [], "lastCreditEntry": None}}
CREATED = {"message": "created", "data": {}}

SDK_HEADERS = {
    "X-Inveterate-Api-Key": KEY,
    "Accept": "application/json",
    "User-Agent": f"inveterate-async/{__version__}",
}
JSON_BODY = {"Content-Type": "application/json"}


def calls(mocked: Any, method: str) -> list[Any]:
    """Every recorded call with ``method``, in order."""
    return [call for (m, _url), found in mocked.requests.items() if m == method for call in found]


def only_call(mocked: Any, method: str) -> dict[str, Any]:
    """The keyword arguments of the one call made (it fails if there were more)."""
    (call,) = calls(mocked, method)
    assert sum(len(found) for found in mocked.requests.values()) == 1
    kwargs: dict[str, Any] = call.kwargs
    return kwargs


def header_set(kwargs: dict[str, Any]) -> list[tuple[str, str]]:
    """The request's headers as sorted (name, value) pairs, repeated names kept."""
    return sorted(kwargs["headers"].items())


def expected(*parts: dict[str, str]) -> list[tuple[str, str]]:
    merged: dict[str, str] = {}
    for part in parts:
        merged.update(part)
    return sorted(merged.items())


# --- headers ---------------------------------------------------------------------------


async def test_own_session_headers_are_exactly_the_sdks(mocked_api: Any) -> None:
    mocked_api.get(ANY_URL, payload=PAGE)
    mocked_api.post(ANY_URL, status=201, payload=CREATED)
    async with InveterateClient(KEY, base_url=BASE) as client:
        await client.get_credits_page("42")
        await client.create_credit("42", "1.00")
    (get,) = calls(mocked_api, "GET")
    (post,) = calls(mocked_api, "POST")
    assert header_set(get.kwargs) == expected(SDK_HEADERS)
    assert header_set(post.kwargs) == expected(SDK_HEADERS, JSON_BODY)
    for call in (get, post):
        assert call.kwargs["allow_redirects"] is False
        assert call.kwargs["raise_for_status"] is False


# A lent session's defaults are merged in by aiohttp; the SDK's own headers must win.
LENT_SESSIONS: list[Any] = [
    pytest.param({}, {}, id="plain"),
    pytest.param(
        {
            "headers": {
                "accept": "text/html",
                "User-Agent": "their-app/2.0",
                "X-Inveterate-Api-Key": "someone-elses-key",
                "X-Team": "finance",
            }
        },
        {"X-Team": "finance"},
        id="with-defaults",
    ),
    # Without decompression the SDK asks for an uncompressed body it can parse.
    pytest.param({"auto_decompress": False}, {"Accept-Encoding": "identity"}, id="no-decompress"),
]


@pytest.mark.parametrize(("session_kwargs", "extra"), LENT_SESSIONS)
async def test_lent_session_gets_the_sdk_headers_with_every_request(
    mocked_api: Any, session_kwargs: dict[str, Any], extra: dict[str, str]
) -> None:
    mocked_api.get(ANY_URL, payload=PAGE)
    mocked_api.post(ANY_URL, status=201, payload=CREATED)
    async with aiohttp.ClientSession(raise_for_status=True, **session_kwargs) as session:
        async with InveterateClient(KEY, base_url=BASE, session=session, timeout=7) as client:
            await client.get_credits_page("42")
            await client.create_credit("42", "1.00")
        assert not session.closed
    (get,) = calls(mocked_api, "GET")
    (post,) = calls(mocked_api, "POST")
    assert header_set(get.kwargs) == expected(SDK_HEADERS, extra)
    assert header_set(post.kwargs) == expected(SDK_HEADERS, extra, JSON_BODY)
    for call in (get, post):
        # Each setting the SDK relies on travels with the request, over the session's.
        assert call.kwargs["allow_redirects"] is False
        assert call.kwargs["raise_for_status"] is False
        assert call.kwargs["timeout"] == aiohttp.ClientTimeout(total=7)


# --- bodies ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "note", "force", "body"),
    [
        pytest.param("10.10", None, None, b'{"amount":10.10}', id="str-amount-only"),
        pytest.param(
            Decimal("-5.00"),
            "refund",
            True,
            b'{"amount":-5.00,"note":"refund","force":true}',
            id="decimal-note-force",
        ),
        pytest.param(7, "", False, b'{"amount":7,"note":"","force":false}', id="int-empty-note"),
        pytest.param(-250, None, True, b'{"amount":-250,"force":true}', id="negative-int"),
        pytest.param(Decimal("1E+3"), None, False, b'{"amount":1E+3,"force":false}', id="exponent"),
        pytest.param(
            "0.000001",
            'Merci "\xe9"\n',
            None,
            b'{"amount":0.000001,"note":"Merci \\"\\u00e9\\"\\n"}',
            id="escaped-note",
        ),
        pytest.param(
            Decimal("12345678901234567890.123456789"),
            "</script>",
            None,
            b'{"amount":12345678901234567890.123456789,"note":"</script>"}',
            id="long-decimal",
        ),
    ],
)
async def test_post_body_is_exactly_these_bytes(
    mocked_api: Any, amount: Decimal | str | int, note: str | None, force: bool | None, body: bytes
) -> None:
    mocked_api.post(ANY_URL, status=201, payload=CREATED)
    async with InveterateClient(KEY, base_url=BASE) as client:
        result = await client.create_credit("42", amount, note=note, force=force)
    assert result.message == "created"
    kwargs = only_call(mocked_api, "POST")
    assert kwargs["data"] == body
    assert kwargs["headers"]["Content-Type"] == "application/json"


async def test_get_has_no_body(mocked_api: Any) -> None:
    mocked_api.get(ANY_URL, payload=PAGE)
    async with InveterateClient(KEY, base_url=BASE) as client:
        await client.get_credits_page("42", limit=5, cursor="abc")
    assert only_call(mocked_api, "GET")["data"] is None


# --- how many times a request is sent ------------------------------------------------------

# Each failure aioresponses can simulate, with the error it must end in.
FAILURES: list[Any] = [
    pytest.param(
        {"status": 500, "payload": {"message": "boom", "data": {}}}, ServerError, id="500"
    ),
    pytest.param({"status": 502, "body": "<html>Bad gateway</html>"}, ServerError, id="502"),
    pytest.param(
        {"status": 503, "payload": {"message": "busy", "data": {}}}, ServerError, id="503"
    ),
    pytest.param(
        {"exception": aiohttp.ClientConnectionError()}, APIConnectionError, id="connection-error"
    ),
    pytest.param(
        {"exception": aiohttp.ServerDisconnectedError()}, APIConnectionError, id="disconnected"
    ),
    pytest.param({"exception": asyncio.TimeoutError()}, APITimeoutError, id="timeout"),
    pytest.param(
        {"status": 200, "body": "<html>Welcome</html>", "content_type": "text/html"},
        InvalidResponseError,
        id="2xx-not-json",
    ),
]


@pytest.mark.parametrize(("failure", "error_type"), FAILURES)
async def test_a_write_is_sent_exactly_once_whatever_fails(
    mocked_api: Any, failure: dict[str, Any], error_type: type[InveterateError]
) -> None:
    mocked_api.post(ANY_URL, repeat=True, **failure)
    async with InveterateClient(KEY, base_url=BASE, backoff_base=0, max_retries=3) as client:
        with pytest.raises(error_type) as caught:
            await client.create_credit("42", "10.00")
    error = caught.value
    assert type(error) is error_type
    assert len(calls(mocked_api, "POST")) == 1
    # The request may have reached the server: the caller is told to check the ledger.
    assert isinstance(error, (ServerError, APIConnectionError, InvalidResponseError))
    assert error.outcome_unknown is True


@pytest.mark.parametrize(("failure", "error_type"), FAILURES)
async def test_a_read_is_retried_after_a_transient_failure(
    mocked_api: Any, failure: dict[str, Any], error_type: type[InveterateError]
) -> None:
    mocked_api.get(ANY_URL, repeat=True, **failure)
    async with InveterateClient(KEY, base_url=BASE, backoff_base=0, max_retries=3) as client:
        with pytest.raises(error_type) as caught:
            await client.get_credits_page("42")
    error = caught.value
    assert type(error) is error_type
    # A 2xx that cannot be read is an answer, not a transient failure: never retried.
    attempts = 1 if error_type is InvalidResponseError else 4
    assert len(calls(mocked_api, "GET")) == attempts
    assert isinstance(error, (ServerError, APIConnectionError, InvalidResponseError))
    assert error.outcome_unknown is False


async def test_a_read_succeeds_on_the_retry_with_the_same_request(mocked_api: Any) -> None:
    mocked_api.get(ANY_URL, exception=aiohttp.ServerDisconnectedError())
    mocked_api.get(ANY_URL, status=503, payload={"message": "busy", "data": {}})
    mocked_api.get(ANY_URL, payload=PAGE)
    async with InveterateClient(KEY, base_url=BASE, backoff_base=0) as client:
        page = await client.get_credits_page("42", limit=5)
    assert page.credits == ()
    sent = calls(mocked_api, "GET")
    assert len(sent) == 3
    assert all(header_set(call.kwargs) == expected(SDK_HEADERS) for call in sent)


async def test_a_write_is_retried_after_429_which_applies_nothing(mocked_api: Any) -> None:
    # The contrast that shows the counting above can see a retry of a POST at all.
    mocked_api.post(ANY_URL, status=429, headers={"Retry-After": "0"}, repeat=True)
    async with InveterateClient(KEY, base_url=BASE, backoff_base=0, max_retries=2) as client:
        with pytest.raises(RateLimitError):
            await client.create_credit("42", "10.00")
    sent = calls(mocked_api, "POST")
    assert len(sent) == 3
    assert {call.kwargs["data"] for call in sent} == {b'{"amount":10.00}'}
