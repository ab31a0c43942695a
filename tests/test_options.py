"""Per-call control and what a caller can see of a success."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from inveterate_async import (
    APIStatusError,
    APITimeoutError,
    BadRequestError,
    Credit,
    InveterateClient,
    ServerError,
)
from inveterate_async.testing import Sandbox

from .conftest import API_KEY

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    servers: list[TestServer] = []

    async def start(handler: Handler) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return str(server.make_url("/v2.0"))

    yield start
    for server in servers:
        await server.close()


async def test_with_options_changes_only_the_derived_client(sandbox: Sandbox) -> None:
    sandbox.add_credits("1", ["1.00"])
    async with InveterateClient(API_KEY, base_url=sandbox.base_url, backoff_base=0) as client:
        quick = client.with_options(max_retries=0, headers={"X-Trace-Id": "t-1"})
        sandbox.fail_next(503)
        with pytest.raises(ServerError):
            await quick.get_credits_page("1")
        assert len(sandbox.requests) == 1, "max_retries=0 on the derived client"
        assert sandbox.requests[0].headers["X-Trace-Id"] == "t-1"
        assert sandbox.requests[0].headers["X-Inveterate-Api-Key"] == API_KEY
        sandbox.reset_stats()
        sandbox.fail_next(503)
        assert (await client.get_credits_page("1")).credits
        assert len(sandbox.requests) == 2, "the original still retries"
        assert "X-Trace-Id" not in sandbox.requests[-1].headers
        await quick.aclose()
        assert (await client.get_credits_page("1")).credits, "closing a derived client"
    with pytest.raises(RuntimeError, match="closed"):
        await quick.get_credits_page("1")


async def test_with_options_timeout_and_deadline(
    serve: Callable[[Handler], Awaitable[str]],
) -> None:
    async def hang(request: web.Request) -> web.StreamResponse:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async with InveterateClient(API_KEY, base_url=await serve(hang), timeout=3600) as client:
        with pytest.raises(APITimeoutError):
            await client.with_options(timeout=0.1, max_retries=0).get_credits_page("1")
        with pytest.raises(APITimeoutError, match="deadline"):
            await client.with_options(deadline=0.1).create_credit("1", "1")


@pytest.mark.parametrize(
    "name",
    [
        "X-Inveterate-Api-Key",
        "x-inveterate-api-key",
        "Accept",
        "User-Agent",
        "Content-Type",
        "Host",
    ],
)
def test_extra_headers_never_replace_the_sdks(name: str) -> None:
    client = InveterateClient(API_KEY, base_url="http://127.0.0.1:1/v2.0")
    with pytest.raises(ValueError, match="set by the SDK"):
        client.with_options(headers={name: "x"})
    with pytest.raises(ValueError, match="line break"):
        client.with_options(headers={"X-Ok": "a\r\nX-Inveterate-Api-Key: b"})


async def test_success_carries_status_request_id_headers_and_a_typed_entry(
    serve: Callable[[Handler], Awaitable[str]],
) -> None:
    async def answer(request: web.Request) -> web.StreamResponse:
        headers = {"X-Request-Id": "req-9", "X-Echo": API_KEY}
        if request.method == "POST":
            entry = {
                "id": "cr_1",
                "amount": 10.10,
                "newBalance": 20.20,
                "createdAt": "2024-03-01T12:00:00Z",
            }
            return web.json_response(
                {"message": "Credit created", "data": entry}, status=201, headers=headers
            )
        page = {"credits": [{"amount": 1}], "lastCreditEntry": None}
        return web.json_response({"message": "ok", "data": page}, headers=headers)

    async with InveterateClient(API_KEY, base_url=await serve(answer)) as client:
        page = await client.get_credits_page("1")
        result = await client.create_credit("1", Decimal("10.10"))
    assert (page.status, page.request_id) == (200, "req-9")
    assert page.headers["x-echo"] == "[redacted]"
    assert (result.status, result.request_id) == (201, "req-9")
    assert result.headers["x-echo"] == "[redacted]"
    assert API_KEY not in repr(result) + repr(page)
    assert isinstance(result.credit, Credit)
    assert result.credit.amount == Decimal("10.10")
    assert result.credit.new_balance == Decimal("20.20")
    assert result.data["id"] == "cr_1"


async def test_a_result_whose_data_is_not_an_entry_has_no_credit(sandbox: Sandbox) -> None:
    sandbox.fail_next(201, body={"message": "queued", "data": {"jobId": 7}}, method="POST")
    async with InveterateClient(API_KEY, base_url=sandbox.base_url) as client:
        result = await client.create_credit("1", "1.00")
        assert (result.message, result.data, result.credit) == ("queued", {"jobId": 7}, None)
        created = await client.create_credit("1", "2.50")
    assert created.credit is not None
    assert created.credit.amount == Decimal("2.50")


def test_plain_http_to_another_host_needs_the_opt_in(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INVETERATE_ALLOW_INSECURE_HTTP", raising=False)
    with pytest.raises(ValueError, match="allow_insecure_http"):
        InveterateClient(API_KEY, base_url="http://sandbox:8080/v2.0")
    client = InveterateClient(
        API_KEY, base_url="http://sandbox:8080/v2.0", allow_insecure_http=True
    )
    assert client.base_url == "http://sandbox:8080/v2.0"
    monkeypatch.setenv("INVETERATE_ALLOW_INSECURE_HTTP", "1")
    assert InveterateClient(API_KEY, base_url="http://sandbox:8080/v2.0").base_url
    with pytest.raises(ValueError, match="production"):
        InveterateClient(API_KEY, base_url="http://public.inveterateapi.com/v2.0")


@pytest.mark.parametrize(
    ("status", "message", "expected"),
    [
        (400, "Invalid API key", True),
        (400, "Check your api-key, URL parameters, and body parameters", True),
        (400, "amount must be a number", False),
        (401, "nope", True),
        (403, "nope", True),
        (404, "Not found", False),
    ],
)
def test_is_auth_error(status: int, message: str, expected: bool) -> None:
    assert APIStatusError(status, message).is_auth_error is expected


async def test_wrong_key_against_the_sandbox_is_an_auth_error(sandbox: Sandbox) -> None:
    async with InveterateClient("wrong", base_url=sandbox.base_url) as client:
        with pytest.raises(BadRequestError) as info:
            await client.get_credits_page("1")
        assert info.value.is_auth_error
        with pytest.raises(BadRequestError) as bad:
            await client.get_credits_page("1", cursor="never-issued")
    assert not bad.value.is_auth_error or bad.value.message == "Invalid API key"
