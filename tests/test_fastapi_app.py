"""The FastAPI example against the Sandbox, tested the ways FastAPI users test: httpx's
AsyncClient over ASGITransport (lifespan run by asgi-lifespan), and the sync TestClient."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI, Response
from fastapi.testclient import TestClient

from examples.fastapi_app.app import create_app
from examples.fastapi_app.errors import error_response, handle_sdk_error
from inveterate_async import (
    AuthenticationError,
    InveterateClient,
    MemberError,
    RateLimitError,
    ServerError,
)
from inveterate_async.testing import Sandbox

from .conftest import API_KEY

AMOUNTS = ["10.10", "0.01", "-2.50", "3", "12345678901234567890.12"]


@asynccontextmanager
async def serve(
    base_url: str, api_key: str = API_KEY, **options: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan running, and an httpx client calling it in-process."""
    options.setdefault("backoff_base", 0)
    app = create_app(lambda: InveterateClient(api_key, base_url=base_url, **options))
    async with (
        LifespanManager(app) as manager,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app), base_url="http://service"
        ) as http,
    ):
        yield http


@pytest.fixture
async def api(sandbox: Sandbox) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(sandbox.base_url) as http:
        yield http


async def test_pages_pass_the_cursor_through_and_keep_every_digit(
    sandbox: Sandbox, api: httpx.AsyncClient
) -> None:
    sandbox.add_credits("42", AMOUNTS)
    amounts: list[str] = []
    cursors: list[str | None] = []
    params: dict[str, str] = {"limit": "2"}
    while True:
        response = await api.get("/members/42/credits", params=params)
        assert response.status_code == 200
        page = response.json()
        amounts += [credit["amount"] for credit in page["credits"]]
        cursors.append(page["next_cursor"])
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]
    assert amounts == AMOUNTS
    assert len(cursors) == 3
    # The cursors are the sandbox's own JSON text, sent back byte for byte.
    assert [request.cursor for request in sandbox.requests] == [None, *cursors[:-1]]
    assert json.loads(cursors[0] or "")["pk"] == "member#42"
    first = sandbox.ledger("42")[0]
    assert page["credits"][0]["id"] == sandbox.ledger("42")[-1]["id"] != first["id"]


async def test_a_credit_is_added_with_its_exact_amount(
    sandbox: Sandbox, api: httpx.AsyncClient
) -> None:
    response = await api.post(
        "/members/42/credits", json={"amount": "10.10", "note": "Refund #1001"}
    )
    assert response.status_code == 201
    body = response.json()
    assert body["message"] == "Credit created"
    assert body["credit"]["amount"] == "10.10"
    assert body["credit"]["note"] == "Refund #1001"
    assert body["request_id"] is None  # the sandbox sends no request id
    (entry,) = sandbox.ledger("42")
    assert (entry["amount"], entry["note"]) == (Decimal("10.10"), "Refund #1001")
    assert sandbox.requests[0].json() == {"amount": Decimal("10.10"), "note": "Refund #1001"}


@pytest.mark.parametrize(
    ("amount", "problem"),
    [
        (10.1, "decimal string"),
        (12345678901234567890.12, "decimal string"),
        ("ten", "decimal string"),
        ("1e3", "decimal string"),
        ("0.00", "must not be zero"),
    ],
)
async def test_amounts_are_refused_before_anything_is_sent(
    sandbox: Sandbox, api: httpx.AsyncClient, amount: object, problem: str
) -> None:
    response = await api.post("/members/42/credits", json={"amount": amount})
    assert response.status_code == 422
    assert problem in response.text
    assert sandbox.requests == []


async def test_the_callers_request_id_reaches_the_api(
    sandbox: Sandbox, api: httpx.AsyncClient
) -> None:
    response = await api.get("/members/42/credits", headers={"X-Request-ID": "req-7"})
    assert response.status_code == 200
    await api.get("/members/42/credits")
    first, second = sandbox.requests
    assert first.headers["X-Request-ID"] == "req-7"
    assert "X-Request-ID" not in second.headers
    assert first.headers["X-Inveterate-Api-Key"] == API_KEY


MAY_HAVE_BEEN_APPLIED = (
    "the credit may have been applied: check the member's ledger before retrying"
)


@pytest.mark.parametrize(
    ("method", "fault", "status", "code", "outcome_unknown"),
    [
        ("GET", {"status": 400, "body": {"message": "limit too large", "data": {}}}, 400,
         "bad_request", False),
        ("POST", {"status": 400, "body": {"message": "Amount over limit", "data": {}}}, 400,
         "bad_request", False),
        ("GET", {"status": 404}, 404, "not_found", False),
        ("GET", {"status": 500, "times": 3}, 502, "upstream_error", False),
        ("GET", {"status": 409}, 502, "upstream_error", False),
        ("GET", {"status": 200, "body": "<html>"}, 502, "upstream_invalid_response", False),
        ("POST", {"status": 500}, 502, "outcome_unknown", True),
        ("POST", {"status": 500, "apply": True}, 502, "outcome_unknown", True),
        ("POST", {"apply": True, "disconnect": True}, 502, "outcome_unknown", True),
        ("POST", {"status": 201, "body": "<html>", "apply": True}, 502, "outcome_unknown",
         True),
    ],
)  # fmt: skip
async def test_api_failures_become_deliberate_http_answers(
    sandbox: Sandbox,
    method: str,
    fault: dict[str, Any],
    status: int,
    code: str,
    outcome_unknown: bool,
) -> None:
    sandbox.fail_next(method=method, **fault)
    async with serve(sandbox.base_url, max_retries=2) as api:
        if method == "GET":
            response = await api.get("/members/42/credits")
        else:
            response = await api.post("/members/42/credits", json={"amount": "5.00"})
    assert response.status_code == status
    body = response.json()
    assert (body["error"], body["outcome_unknown"]) == (code, outcome_unknown)
    if outcome_unknown:
        assert body["message"] == MAY_HAVE_BEEN_APPLIED
    if code == "bad_request":
        assert body["message"] == fault["body"]["message"]
    # Whatever the answer, the ledger holds exactly what the sandbox applied.
    applied = method == "POST" and fault.get("apply", False)
    assert sandbox.balance("42") == (Decimal("5.00") if applied else 0)


async def test_a_rate_limit_is_passed_on_with_retry_after(sandbox: Sandbox) -> None:
    sandbox.fail_next(429, retry_after=7)
    async with serve(sandbox.base_url, max_retries=0) as api:
        response = await api.post("/members/42/credits", json={"amount": "5.00"})
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"
    assert response.json()["error"] == "rate_limited"
    assert response.json()["outcome_unknown"] is False
    assert sandbox.ledger("42") == []


async def test_a_refused_key_is_this_service_fault_and_never_shown(
    sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    wrong_key = "sk_live_wrong-0123456789"
    caplog.set_level(logging.WARNING)
    async with serve(sandbox.base_url, api_key=wrong_key) as api:
        response = await api.post("/members/42/credits", json={"amount": "5.00"})
    assert response.status_code == 500
    assert response.json() == {
        "error": "upstream_auth",
        "message": "the credits service is misconfigured",
        "outcome_unknown": False,
        "request_id": None,
    }
    assert [record.levelname for record in caplog.records] == ["ERROR"]
    assert "Invalid API key" in caplog.text
    assert wrong_key not in caplog.text + response.text
    assert sandbox.ledger("42") == []


@asynccontextmanager
async def silent_server() -> AsyncIterator[str]:
    """A server that accepts connections and never answers: every call times out."""
    silence = asyncio.Event()

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await silence.wait()
        writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/v2.0"
    finally:
        silence.set()
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(("method", "outcome_unknown"), [("GET", False), ("POST", True)])
async def test_timeouts_are_504_and_say_whether_a_write_may_have_landed(
    method: str, outcome_unknown: bool
) -> None:
    async with silent_server() as base_url, serve(base_url, timeout=0.2, max_retries=0) as api:
        if method == "GET":
            response = await api.get("/members/42/credits")
        else:
            response = await api.post("/members/42/credits", json={"amount": "5.00"})
    assert response.status_code == 504
    body = response.json()
    assert (body["error"], body["outcome_unknown"]) == ("upstream_timeout", outcome_unknown)
    assert (body["message"] == MAY_HAVE_BEEN_APPLIED) is outcome_unknown


def closed_port() -> int:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        port: int = listener.getsockname()[1]
    return port


async def test_an_unreachable_api_is_502_and_nothing_was_applied() -> None:
    async with serve(f"http://127.0.0.1:{closed_port()}/v2.0") as api:
        response = await api.post("/members/42/credits", json={"amount": "5.00"})
    assert response.status_code == 502
    body = response.json()
    assert (body["error"], body["outcome_unknown"]) == ("upstream_unreachable", False)


def body_of(response: Response) -> Any:
    return json.loads(bytes(response.body))


def test_every_kind_of_sdk_error_has_an_answer() -> None:
    no_wait = error_response(RateLimitError(429, "slow down"))
    assert (no_wait.status_code, "retry-after" in no_wait.headers) == (429, False)
    assert error_response(AuthenticationError(401, "no")).status_code == 500
    member = error_response(MemberError("42", ServerError(500, "boom"), None))
    assert (member.status_code, body_of(member)["error"]) == (502, "upstream_error")
    with_id = error_response(ServerError(503, "down", headers={"x-request-id": "abc"}))
    assert body_of(with_id)["request_id"] == "abc"


async def test_the_handler_leaves_other_errors_alone() -> None:
    with pytest.raises(KeyError):
        await handle_sdk_error(None, KeyError("x"))  # type: ignore[arg-type]


# The sync TestClient runs the app in a loop of its own, in another thread.


@pytest.fixture
def threaded_sandbox() -> Iterator[Any]:
    with Sandbox(api_key=API_KEY).start_in_thread() as server:
        yield server


def client_for(base_url: str, **options: Any) -> Callable[[], InveterateClient]:
    return lambda: InveterateClient(API_KEY, base_url=base_url, backoff_base=0, **options)


def test_testclient_with_a_sandbox_in_a_thread(threaded_sandbox: Any) -> None:
    threaded_sandbox.add_credits("42", AMOUNTS[:3])
    app: FastAPI = create_app(client_for(threaded_sandbox.base_url))
    with TestClient(app) as http:
        listed = http.get("/members/42/credits", params={"limit": 2}).json()
        rest = http.get("/members/42/credits", params={"cursor": listed["next_cursor"]}).json()
        created = http.post("/members/42/credits", json={"amount": "-1.50"})
    assert [c["amount"] for c in listed["credits"] + rest["credits"]] == AMOUNTS[:3]
    assert rest["next_cursor"] is None
    assert created.status_code == 201
    assert threaded_sandbox.balance("42") == Decimal("6.11")


async def test_testclient_with_a_sandbox_in_the_tests_loop_starves_it() -> None:
    # The documented deadlock: TestClient blocks this loop, where the sandbox lives, while
    # the app (in TestClient's loop) waits for the sandbox; only the timeout ends the wait.
    async with Sandbox(api_key=API_KEY) as sandbox:
        app = create_app(client_for(sandbox.base_url, timeout=0.2, max_retries=0))
        with TestClient(app) as http:
            response = http.get("/members/42/credits")
        assert sandbox.requests == []
    assert response.status_code == 504
    assert response.json()["error"] == "upstream_timeout"
