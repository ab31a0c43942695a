"""The Sandbox served from its own thread: used from plain synchronous code (urllib), from
another event loop, and its lifecycle."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from inveterate_async import BadRequestError, InveterateClient
from inveterate_async.testing import Sandbox, ThreadedSandbox

KEY = "sk_test_thread"


@pytest.fixture
def sandbox() -> Iterator[ThreadedSandbox]:
    with Sandbox(api_key=KEY, default_limit=2).start_in_thread() as server:
        yield server


def http(
    sandbox: ThreadedSandbox, path: str, body: dict[str, Any] | None = None, key: str = KEY
) -> tuple[int, dict[str, str], Any]:
    """A plain urllib request, as a synchronous test or a ``requests`` user would make."""
    request = urllib.request.Request(
        sandbox.base_url + path,
        data=None if body is None else json.dumps(body).encode(),
        headers={"X-Inveterate-Api-Key": key, "Content-Type": "application/json"},
        method="GET" if body is None else "POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, headers, raw = response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        status, headers, raw = error.code, dict(error.headers), error.read()
    return status, headers, json.loads(raw, parse_float=Decimal)


def test_synchronous_code_reads_pages_and_writes(sandbox: ThreadedSandbox) -> None:
    sandbox.add_credits("42", ["10.00", "-2.50", "0.01"])

    status, _, first = http(sandbox, "/admin/members/42/credits")
    assert status == 200
    assert [entry["amount"] for entry in first["data"]["credits"]] == [
        Decimal("10.00"),
        Decimal("-2.50"),
    ]
    cursor = urllib.parse.quote(first["data"]["lastCreditEntry"], safe="")
    status, _, second = http(sandbox, f"/admin/members/42/credits?lastCreditEntry={cursor}")
    assert status == 200
    assert [entry["amount"] for entry in second["data"]["credits"]] == [Decimal("0.01")]
    assert second["data"]["lastCreditEntry"] is None

    status, _, created = http(sandbox, "/admin/members/42/credits", {"amount": 5, "note": "hi"})
    assert (status, created["data"]["amount"], created["data"]["note"]) == (201, 5, "hi")
    assert sandbox.balance("42") == Decimal("12.51")
    assert [entry["amount"] for entry in sandbox.ledger("42")][-1] == Decimal("5")
    assert [request.method for request in sandbox.requests] == ["GET", "GET", "POST"]


def test_faults_and_stats_are_set_from_the_test_thread(sandbox: ThreadedSandbox) -> None:
    sandbox.fail_next(503, retry_after=7, method="GET")
    status, headers, body = http(sandbox, "/admin/members/1/credits")
    assert (status, headers["Retry-After"]) == (503, "7")
    assert set(body) == {"message", "data"}
    status, _, body = http(sandbox, "/admin/members/1/credits", key="wrong")
    assert status == 400
    assert body["message"] == "Invalid API key"
    assert len(sandbox.requests) == 2
    sandbox.reset_stats()
    assert sandbox.requests == []


def test_seed_members_returns_ids_served_over_http(sandbox: ThreadedSandbox) -> None:
    ids = sandbox.seed_members(3, credits_per_member=2, prefix="m")
    assert ids == ["m1", "m2", "m3"]
    status, _, page = http(sandbox, "/admin/members/m3/credits")
    assert status == 200
    assert len(page["data"]["credits"]) == 2


def test_call_runs_functions_and_coroutines_on_the_sandbox_thread(
    sandbox: ThreadedSandbox,
) -> None:
    assert sandbox.call(threading.current_thread) is not threading.current_thread()
    assert sandbox.call(asyncio.sleep, 0, "slept") == "slept"
    sandbox.call(setattr, sandbox.sandbox, "default_limit", 1)
    sandbox.add_credits("7", ["1", "2"])
    assert len(http(sandbox, "/admin/members/7/credits")[2]["data"]["credits"]) == 1


def test_errors_are_raised_in_the_caller(sandbox: ThreadedSandbox) -> None:
    with pytest.raises(TypeError, match=r"not 0\.5"):
        sandbox.add_credits("42", [0.5])  # type: ignore[list-item]
    assert sandbox.ledger("42") == []
    with pytest.raises(RuntimeError, match="sandbox's thread"):
        sandbox.call(sandbox.call, len, "x")


async def test_the_sdk_in_another_loop_uses_it(sandbox: ThreadedSandbox) -> None:
    sandbox.add_credits("42", ["10.10", "0.20", "3"])
    async with InveterateClient(KEY, base_url=sandbox.base_url) as client:
        amounts = [credit.amount async for credit in client.iter_credits("42")]
        result = await client.create_credit("42", Decimal("1.01"))
    assert amounts == [Decimal("10.10"), Decimal("0.20"), Decimal("3")]
    assert result.message == "Credit created"
    assert sandbox.balance("42") == Decimal("14.31")
    async with InveterateClient("wrong", base_url=sandbox.base_url, max_retries=0) as client:
        with pytest.raises(BadRequestError) as info:
            await client.get_credits_page("42")
    assert info.value.is_auth_error


def test_lifecycle_close_is_final_and_idempotent() -> None:
    before = set(threading.enumerate())
    threaded = Sandbox(api_key=KEY).start_in_thread()
    (thread,) = set(threading.enumerate()) - before
    assert thread.daemon
    assert repr(threaded) == f"<ThreadedSandbox running at {threaded.base_url}>"
    assert threaded.api_key == KEY
    assert threaded.base_url == f"http://127.0.0.1:{threaded.port}/v2.0"
    threaded.close()
    threaded.close()
    assert not thread.is_alive()
    assert repr(threaded) == "<ThreadedSandbox not running>"
    with pytest.raises(RuntimeError, match="not running"):
        threaded.balance("42")
    with pytest.raises(RuntimeError, match="already started"):
        threaded.start()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(threaded.base_url + "/admin/members/1/credits", timeout=10)


def test_a_port_in_use_raises_in_the_caller(sandbox: ThreadedSandbox) -> None:
    before = set(threading.enumerate())
    with pytest.raises(OSError, match="address already in use"):
        Sandbox(port=sandbox.port).start_in_thread()
    assert set(threading.enumerate()) == before


def test_a_started_sandbox_cannot_be_started_in_a_thread(sandbox: ThreadedSandbox) -> None:
    served = sandbox.sandbox
    assert isinstance(served, Sandbox)
    with pytest.raises(RuntimeError, match="already started"):
        served.start_in_thread()
