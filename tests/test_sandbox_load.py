"""The sandbox as the API of load and multi-process tests: seeded random transient
failures, no request log, and the ``inveterate sandbox`` flags that set them up."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from inveterate_async.cli import _serve
from inveterate_async.cli._core import start_sandbox
from inveterate_async.testing import Sandbox
from tests.cli_support import invoke

KEY = {"X-Inveterate-Api-Key": "test-key"}


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def read_statuses(http: aiohttp.ClientSession, sandbox: Sandbox, count: int) -> list[int]:
    statuses = []
    for number in range(count):
        url = f"{sandbox.base_url}/admin/members/{number % 7}/credits"
        async with http.get(url, headers=KEY) as response:
            statuses.append(response.status)
    return statuses


async def test_random_failures_are_seeded_and_transient(http: aiohttp.ClientSession) -> None:
    runs = []
    for _ in range(2):
        async with Sandbox() as sandbox:
            sandbox.fail_randomly(0.3, seed=7)
            runs.append(await read_statuses(http, sandbox, 200))

    assert runs[0] == runs[1]  # the same requests in the same order fail the same way
    assert set(runs[0]) == {200, 503}
    assert 20 < runs[0].count(503) < 100


async def test_random_failures_hit_ledger_reads_only(http: aiohttp.ClientSession) -> None:
    async with Sandbox() as sandbox:
        sandbox.fail_randomly(1, status=502)
        async with http.get(f"{sandbox.base_url}/admin/members/1/credits", headers=KEY) as read:
            body = await read.json()
        async with http.post(
            f"{sandbox.base_url}/admin/members/1/credits", headers=KEY, json={"amount": 1}
        ) as write:
            written = write.status
        async with http.get(f"{sandbox.base_url}/elsewhere", headers=KEY) as other:
            elsewhere = other.status
        sandbox.fail_randomly(0)
        assert await read_statuses(http, sandbox, 3) == [200] * 3

    assert read.status == 502
    assert body == {"message": "Injected transient failure (HTTP 502)", "data": {}}
    assert (written, elsewhere) == (201, 404)


@pytest.mark.parametrize(
    ("rate", "status"), [(-0.1, 503), (1.5, 503), (True, 503), ("0.1", 503), (0.1, 404)]
)
def test_random_failure_settings_are_checked(rate: Any, status: int) -> None:
    with pytest.raises(ValueError, match=r"^(rate|status) must be"):
        Sandbox().fail_randomly(rate, status=status)


async def test_a_sandbox_can_keep_no_request_log(http: aiohttp.ClientSession) -> None:
    async with Sandbox(record_requests=False) as sandbox:
        assert await read_statuses(http, sandbox, 5) == [200] * 5
        assert sandbox.requests == []


async def test_the_served_sandbox_is_seeded_as_asked(http: aiohttp.ClientSession) -> None:
    sandbox = await start_sandbox(
        members=3, api_key="test-key", credits_per_member=7, page_size=4, record_requests=False
    )
    try:
        async with http.get(f"{sandbox.base_url}/admin/members/3/credits", headers=KEY) as first:
            page = (await first.json())["data"]
        assert len(sandbox.ledger("3")) == 7
        assert len(page["credits"]) == 4
        assert page["lastCreditEntry"] is not None
        assert sandbox.requests == []
    finally:
        await sandbox.close()


def test_the_sandbox_command_passes_its_load_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    served: list[dict[str, Any]] = []

    async def fake_serve(**kwargs: Any) -> None:
        served.append(kwargs)

    monkeypatch.setattr(_serve, "serve_sandbox", fake_serve)
    result = invoke(
        ["sandbox", "--members", "5000", "--credits-per-member", "2", "--page-size", "3",
         "--latency", "2.5", "--fail-rate", "0.02", "--seed", "11"]
    )  # fmt: skip

    assert result.exit_code == 0
    options = served[0]
    assert (options["members"], options["credits_per_member"], options["page_size"]) == (5000, 2, 3)
    assert (options["latency"], options["fail_rate"], options["seed"]) == (0.0025, 0.02, 11)


@pytest.mark.parametrize(
    "args", [["--fail-rate", "1.5"], ["--latency", "-1"], ["--page-size", "0"]]
)
def test_bad_load_flags_are_usage_errors(args: list[str]) -> None:
    assert invoke(["sandbox", *args]).exit_code == 2
