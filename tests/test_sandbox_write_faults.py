"""Seeded write faults (500 before or after applying, dropped after applying) and members
that do not exist (404), served by a real Sandbox and driven by a plain aiohttp client."""

import asyncio
import json
import math
from collections import Counter
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import aiohttp
import pytest

from inveterate_async import InveterateClient, NotFoundError
from inveterate_async.testing import ManualClock, Sandbox
from tests.test_sandbox import KEY, credits_url, fetch, get_page, post_credit, raw_url

# What became of one POST: its answer ("201", "500", "dropped") and whether it was applied.
Outcome = tuple[str, bool]
BEFORE, AFTER, DROPPED, APPLIED = ("500", False), ("500", True), ("dropped", True), ("201", True)
SHARES = {"before": 0.2, "after": 0.15, "dropped": 0.1}


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox() as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def row(number: int) -> bytes:
    return json.dumps({"amount": 1, "note": f"row-{number}"}).encode()


async def answer(http: aiohttp.ClientSession, sandbox: Sandbox, member: str, body: bytes) -> str:
    try:
        status, _ = await post_credit(http, sandbox, member, body)
    except aiohttp.ServerDisconnectedError:
        return "dropped"
    return str(status)


async def post_rows(
    http: aiohttp.ClientSession, sandbox: Sandbox, count: int, member: str = "42"
) -> list[Outcome]:
    """POST rows ``row-0`` .. one by one; what each was answered and whether it applied."""
    answers = [await answer(http, sandbox, member, row(number)) for number in range(count)]
    applied = {entry["note"] for entry in sandbox.ledger(member)}
    return [(text, f"row-{number}" in applied) for number, text in enumerate(answers)]


async def rehearse(http: aiohttp.ClientSession, seed: int, count: int = 200) -> list[Outcome]:
    async with Sandbox() as sandbox:
        sandbox.fail_writes_randomly(**SHARES, seed=seed)
        return await post_rows(http, sandbox, count)


# --- fail_writes_randomly ----------------------------------------------------------------


async def test_each_share_of_writes_meets_its_fault(http: aiohttp.ClientSession) -> None:
    outcomes = await rehearse(http, seed=7)
    counts = Counter(outcomes)

    # Every POST is one of the four cases; nothing answered 201 or dropped went unapplied.
    assert set(counts) <= {BEFORE, AFTER, DROPPED, APPLIED}
    # Exact for the seed (random.Random's draws are stable across Python versions)...
    assert (counts[BEFORE], counts[AFTER], counts[DROPPED], counts[APPLIED]) == (48, 31, 22, 99)
    # ...and what the shares promise, within four standard deviations.
    for outcome, share in ((BEFORE, 0.2), (AFTER, 0.15), (DROPPED, 0.1), (APPLIED, 0.55)):
        assert abs(counts[outcome] - 200 * share) < 4 * math.sqrt(200 * share * (1 - share))


async def test_write_faults_are_reproducible_for_a_seed(http: aiohttp.ClientSession) -> None:
    first, again, other = [await rehearse(http, seed) for seed in (7, 7, 8)]
    assert first == again
    assert first != other


@pytest.mark.parametrize(
    ("shares", "expected", "balance"),
    [({"before": 1}, "500", 0), ({"after": 1}, "500", 1), ({"dropped": 1}, "dropped", 1)],
)
async def test_one_kind_of_fault_for_every_write(
    sandbox: Sandbox,
    http: aiohttp.ClientSession,
    shares: dict[str, float],
    expected: str,
    balance: int,
) -> None:
    sandbox.fail_writes_randomly(**shares, seed=0)
    assert [await answer(http, sandbox, "42", row(n)) for n in range(3)] == [expected] * 3
    assert sandbox.balance("42") == 3 * balance


async def test_an_injected_500_is_the_usual_fault_body(
    sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    sandbox.fail_writes_randomly(after=1)
    status, text = await post_credit(http, sandbox, "42", row(0))
    assert status == 500
    assert json.loads(text) == {"message": "Injected failure (HTTP 500)", "data": {}}


async def test_a_dropped_write_gets_no_answer_at_all(sandbox: Sandbox) -> None:
    sandbox.fail_writes_randomly(dropped=1)
    reader, writer = await asyncio.open_connection("127.0.0.1", sandbox.port)
    body = b'{"amount": 3}'
    writer.write(
        b"POST /v2.0/admin/members/42/credits HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"X-Inveterate-Api-Key: test-key\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    await writer.drain()
    received = await asyncio.wait_for(reader.read(), timeout=10)
    writer.close()
    await writer.wait_closed()

    assert received == b""  # the connection closed without a byte of a response
    assert sandbox.balance("42") == 3


async def test_reads_and_other_paths_draw_nothing(http: aiohttp.ClientSession) -> None:
    async with Sandbox() as plain:
        plain.fail_writes_randomly(**SHARES, seed=3)
        expected = await post_rows(http, plain, 30)
    async with Sandbox() as mixed:
        mixed.fail_writes_randomly(**SHARES, seed=3)
        answers = []
        for number in range(30):
            status, _ = await get_page(http, mixed, "42")
            elsewhere, _, _ = await fetch(http, raw_url(mixed, "/v2.0/other"), method="POST")
            assert (status, elsewhere) == (200, 404)
            answers.append(await answer(http, mixed, "42", row(number)))
        assert answers == [text for text, _ in expected]


async def test_queued_faults_come_first_and_draw_nothing(http: aiohttp.ClientSession) -> None:
    async with Sandbox() as plain:
        plain.fail_writes_randomly(**SHARES, seed=5)
        expected = [await answer(http, plain, "42", row(n)) for n in range(20)]
    async with Sandbox() as queued:
        queued.fail_writes_randomly(**SHARES, seed=5)
        queued.fail_next(503, method="POST")
        answers = [await answer(http, queued, "42", row(n)) for n in range(21)]
    assert answers == ["503", *expected]


async def test_a_new_call_restarts_the_draws_and_zero_stops_them(
    sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    sandbox.fail_writes_randomly(**SHARES, seed=9)
    first = [await answer(http, sandbox, "42", row(n)) for n in range(20)]
    sandbox.fail_writes_randomly(**SHARES, seed=9)
    assert [await answer(http, sandbox, "42", row(n)) for n in range(20)] == first
    sandbox.fail_writes_randomly()
    assert [await answer(http, sandbox, "42", row(n)) for n in range(10)] == ["201"] * 10


async def test_a_credit_applied_before_its_500_shows_after_the_visibility_delay(
    http: aiohttp.ClientSession,
) -> None:
    clock = ManualClock(1_800_000_000.0)
    async with Sandbox(clock=clock, visibility_delay=60) as sandbox:
        sandbox.fail_writes_randomly(after=1)
        status, _ = await post_credit(http, sandbox, "42", row(0))
        assert (status, sandbox.balance("42")) == (500, Decimal(1))
        _, body = await get_page(http, sandbox, "42")
        assert body["data"]["credits"] == []
        clock.advance(59.999)
        _, body = await get_page(http, sandbox, "42")
        assert body["data"]["credits"] == []
        clock.advance(0.001)
        _, body = await get_page(http, sandbox, "42")
        assert [entry["note"] for entry in body["data"]["credits"]] == ["row-0"]


@pytest.mark.parametrize(
    "shares",
    [
        {"before": -0.1},
        {"after": 1.5},
        {"dropped": math.nan},
        {"before": math.inf},
        {"after": True},
        {"dropped": "0.1"},
        {"before": 0.5, "after": 0.4, "dropped": 0.2},
        {"before": 1, "after": 0.001},
    ],
)
def test_bad_shares_are_refused(shares: dict[str, Any]) -> None:
    sandbox = Sandbox()
    with pytest.raises(ValueError, match=r"(before|after|dropped) must be"):
        sandbox.fail_writes_randomly(**shares)


def test_shares_typed_as_decimals_may_sum_to_exactly_one() -> None:
    Sandbox().fail_writes_randomly(before=0.1, after=0.2, dropped=0.7)


def test_a_threaded_sandbox_fails_writes_too() -> None:
    with Sandbox().start_in_thread() as sandbox:
        sandbox.fail_writes_randomly(before=1)

        served = sandbox.sandbox
        assert isinstance(served, Sandbox)

        async def post() -> str:
            async with aiohttp.ClientSession() as http:
                return await answer(http, served, "42", row(0))

        assert asyncio.run(post()) == "500"
        assert sandbox.balance("42") == 0


# --- members_exist -----------------------------------------------------------------------


def only(*members: str) -> Sandbox:
    return Sandbox(members_exist=lambda member: member in members)


async def test_an_unknown_member_is_404_on_get_and_post_and_gets_nothing(
    http: aiohttp.ClientSession,
) -> None:
    async with only("1", "a/b") as sandbox:
        for method in ("GET", "POST"):
            url = credits_url(sandbox, "ghost")
            status, text, response = await fetch(
                http, url, method=method, headers={**KEY, "Content-Type": "application/json"},
                body=b'{"amount": 5}' if method == "POST" else None,
            )  # fmt: skip
            assert status == 404
            assert response.content_type == "application/json"
            assert json.loads(text) == {"message": "Customer not found", "data": {}}
        assert sandbox.ledger("ghost") == []
        assert [request.method for request in sandbox.requests] == ["GET", "POST"]

        # Members that exist are served as ever; the predicate gets the decoded id.
        assert (await post_credit(http, sandbox, "a/b", b'{"amount": 5}'))[0] == 201
        status, body = await get_page(http, sandbox, "1")
        assert (status, body["data"]["credits"]) == (200, [])
        assert sandbox.balance("a/b") == 5


async def test_the_key_is_checked_before_the_member(http: aiohttp.ClientSession) -> None:
    async with only() as sandbox:
        status, text, _ = await fetch(http, credits_url(sandbox, "ghost"), headers={})
        assert (status, json.loads(text)["message"]) == (400, "Invalid API key")


async def test_a_write_fault_on_an_unknown_member_applies_nothing(
    http: aiohttp.ClientSession,
) -> None:
    async with only("1") as sandbox:
        sandbox.fail_writes_randomly(after=0.5, dropped=0.5)
        answers = [await answer(http, sandbox, "ghost", row(n)) for n in range(10)]
        assert set(answers) <= {"500", "dropped"}
        assert sandbox.ledger("ghost") == []


async def test_members_exist_can_change_between_requests(http: aiohttp.ClientSession) -> None:
    async with only() as sandbox:
        assert (await get_page(http, sandbox, "7"))[0] == 404
        sandbox.members_exist = None
        assert (await get_page(http, sandbox, "7"))[0] == 200


async def test_the_sdk_raises_not_found_for_an_unknown_member() -> None:
    async with Sandbox("k", members_exist=lambda member: member != "404") as sandbox:
        sandbox.add_credits("404", ["1.00"])  # seeding is not refused; the API is
        async with InveterateClient("k", base_url=sandbox.base_url, max_retries=0) as client:
            with pytest.raises(NotFoundError, match="Customer not found"):
                await client.get_credits_page("404")
            with pytest.raises(NotFoundError):
                await client.create_credit("404", Decimal("2.00"))
            await client.create_credit("405", Decimal("2.00"))
        assert sandbox.balance("404") == 1
        assert sandbox.balance("405") == 2
