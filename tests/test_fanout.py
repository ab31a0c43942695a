"""iter_credits_many: bounded concurrency, order per member, backpressure, failures."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal

import aiohttp
import pytest

from inveterate_async import (
    APIConnectionError,
    BadRequestError,
    InveterateClient,
    MemberError,
    ServerError,
)
from inveterate_async.testing import Sandbox

from .conftest import API_KEY, assert_no_connection_held


def seed(sandbox: Sandbox, members: int, credits: int) -> dict[str, list[str]]:
    ledgers = {}
    for m in range(1, members + 1):
        amounts = [f"{m}.{n:02d}" for n in range(1, credits + 1)]
        sandbox.add_credits(str(m), amounts)
        ledgers[str(m)] = amounts
    return ledgers


async def wait_for(condition: object, what: str) -> None:
    """Let the loop run until condition() holds (bounded), without asserting on timing."""
    for _ in range(2000):
        if condition():  # type: ignore[operator]
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"never happened: {what}")


async def test_every_members_credits_arrive_in_ledger_order(
    sandbox: Sandbox, client: InveterateClient
) -> None:
    ledgers = seed(sandbox, 20, 7)
    got: dict[str, list[str]] = {}
    stream = client.iter_credits_many(list(ledgers), concurrency=4, page_size=3)
    async for customer_id, credit in stream:
        got.setdefault(str(customer_id), []).append(str(credit.amount))
    assert got == ledgers
    assert stream.members_done == 20
    assert stream.failures == []


async def test_an_id_given_again_is_read_once_in_ledger_order(
    sandbox: Sandbox, client: InveterateClient
) -> None:
    seed(sandbox, 2, 6)
    got: list[tuple[str, str]] = []
    stream = client.iter_credits_many(["1", "1", 1, "2", "1"], concurrency=4, page_size=2)
    async for customer_id, credit in stream:
        got.append((str(customer_id), str(credit.amount)))
    member_1 = [amount for member, amount in got if member == "1"]
    assert member_1 == [f"1.{n:02d}" for n in range(1, 7)]  # once, in order
    assert len(got) == 12
    assert stream.members_done == 2


async def test_ids_from_an_async_iterable_and_ints(
    sandbox: Sandbox, client: InveterateClient
) -> None:
    seed(sandbox, 5, 2)

    async def ids() -> AsyncIterator[int]:
        for n in range(1, 6):
            yield n

    pairs = [(cid, c.amount) async for cid, c in client.iter_credits_many(ids(), concurrency=3)]
    assert sorted(pairs) == sorted(
        (m, Decimal(f"{m}.{n:02d}")) for m in range(1, 6) for n in (1, 2)
    )


async def test_concurrency_is_bounded() -> None:
    async with Sandbox(api_key=API_KEY, latency=0.2) as sandbox:
        seed(sandbox, 12, 1)
        async with InveterateClient(API_KEY, base_url=sandbox.base_url) as client:
            count = 0
            async for _ in client.iter_credits_many(map(str, range(1, 13)), concurrency=4):
                count += 1
        assert count == 12
        assert sandbox.max_in_flight == 4


async def test_ids_are_read_lazily_and_a_slow_consumer_pauses_fetching(
    sandbox: Sandbox, client: InveterateClient
) -> None:
    seed(sandbox, 8, 1)
    pulled = 0

    def ids() -> Iterator[str]:
        nonlocal pulled
        for n in range(1_000_000):
            pulled += 1
            yield str(n + 1)

    concurrency = 4
    async with client.iter_credits_many(ids(), concurrency=concurrency) as stream:
        await stream.__anext__()
        # Let the workers run as far as they can while nobody consumes.
        last = -1
        while last != len(sandbox.requests):
            last = len(sandbox.requests)
            await wait_for(lambda: sandbox.in_flight == 0, "requests settle")
            for _ in range(50):
                await asyncio.sleep(0)
        # Each worker holds one unread response; only the worker whose page is being
        # delivered has moved on (to its next member: one credit each).
        assert concurrency <= len(sandbox.requests) <= concurrency + 1
        assert pulled <= concurrency + 1
    assert pulled < 100


async def test_leaving_early_cancels_in_flight_requests() -> None:
    async with Sandbox(api_key=API_KEY, latency=0.3) as sandbox:
        seed(sandbox, 1, 1)
        # Counted as the client starts them: one started before the close may still be
        # on its way to the server.
        started: list[object] = []

        async def on_request_start(*_: object) -> None:
            started.append(_)

        trace = aiohttp.TraceConfig()
        trace.on_request_start.append(on_request_start)
        # A pool of one: the five workers queue for it, one request in flight at a time.
        connector = aiohttp.TCPConnector(limit=1)
        async with aiohttp.ClientSession(connector=connector, trace_configs=[trace]) as session:
            client = InveterateClient(API_KEY, base_url=sandbox.base_url, session=session)
            ids = ["1"] + [str(n) for n in range(100, 120)]
            async with client.iter_credits_many(ids, concurrency=5) as stream:
                async for _ in stream:
                    break
            # Nothing more is started once the stream is closed...
            sent = len(started)
            await wait_for(lambda: sandbox.in_flight == 0, "server done")
            assert len(started) == sent <= 6
            # ...and the in-flight request gave its connection back.
            await assert_no_connection_held(client)
            assert len(started) == sent + 1
            assert len(sandbox.requests) <= sent + 1


async def test_cancelling_the_consumer_cancels_the_workers() -> None:
    async with Sandbox(api_key=API_KEY, latency=30) as sandbox:
        # Exactly as many connections as workers: all three requests are in flight at once.
        connector = aiohttp.TCPConnector(limit=3)
        async with aiohttp.ClientSession(connector=connector) as session:
            client = InveterateClient(API_KEY, base_url=sandbox.base_url, session=session)

            async def consume() -> None:
                async for _ in client.iter_credits_many(["1", "2", "3"], concurrency=3):
                    pass

            task = asyncio.create_task(consume())
            await wait_for(lambda: sandbox.in_flight == 3, "three requests in flight")
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            # All three connections are free again: three new requests reach the server
            # together (each then waits out the latency, so none can pass its slot on).
            sandbox.reset_stats()
            probes = [asyncio.create_task(client.get_credits_page(n)) for n in ("7", "8", "9")]
            try:
                await wait_for(lambda: len(sandbox.requests) == 3, "three requests on three slots")
                assert sorted(r.customer_id or "" for r in sandbox.requests) == ["7", "8", "9"]
            finally:
                for probe in probes:
                    probe.cancel()
                await asyncio.gather(*probes, return_exceptions=True)


async def test_collect_keeps_everyone_elses_data_and_reports_failures(sandbox: Sandbox) -> None:
    ledgers = seed(sandbox, 10, 4)
    sandbox.fail_next(500, times=10, customer_id="3", body={"message": "ledger locked", "data": {}})
    async with InveterateClient(API_KEY, base_url=sandbox.base_url, max_retries=0) as client:
        got: dict[str, list[str]] = {}
        async with client.iter_credits_many(
            [*ledgers, ""], concurrency=3, on_error="collect"
        ) as stream:
            async for customer_id, credit in stream:
                got.setdefault(str(customer_id), []).append(str(credit.amount))
    assert got == {m: a for m, a in ledgers.items() if m != "3"}
    assert stream.members_done == 11
    failures = {f.customer_id: f for f in stream.failures}
    assert set(failures) == {"3", ""}
    assert isinstance(failures["3"].error, ServerError)
    assert failures["3"].error.message == "ledger locked"
    assert failures["3"].cursor is None
    assert isinstance(failures[""].error, ValueError)


async def test_a_failure_mid_ledger_reports_where_to_resume(sandbox: Sandbox) -> None:
    seed(sandbox, 1, 6)
    async with InveterateClient(API_KEY, base_url=sandbox.base_url, max_retries=0) as client:
        stream = client.iter_credits_many(["1"], page_size=2, on_error="collect")
        got = []
        async for _, credit in stream:
            got.append(str(credit.amount))
            if len(got) == 2:
                sandbox.fail_next(503, customer_id="1")
        (failure,) = stream.failures
        assert got == ["1.01", "1.02"]
        rest = [
            str(c.amount)
            async for c in client.iter_credits("1", page_size=2, cursor=failure.cursor)
        ]
    assert rest == ["1.03", "1.04", "1.05", "1.06"]


async def test_raise_stops_at_the_first_failing_member(sandbox: Sandbox) -> None:
    seed(sandbox, 4, 1)
    sandbox.fail_next(400, customer_id="2", body={"message": "unknown member", "data": {}})
    async with InveterateClient(API_KEY, base_url=sandbox.base_url) as client:
        with pytest.raises(MemberError) as info:
            async for _ in client.iter_credits_many(["1", "2", "3", "4"], concurrency=1):
                pass
    error = info.value
    assert error.customer_id == "2"
    assert isinstance(error.error, BadRequestError)
    assert error.__cause__ is error.error
    assert "member '2'" in str(error)
    assert "unknown member" in str(error)


async def test_a_broken_id_source_stops_the_stream(client: InveterateClient) -> None:
    def ids() -> Iterator[str]:
        yield "1"
        raise OSError("ids file vanished")

    with pytest.raises(OSError, match="vanished"):
        async for _ in client.iter_credits_many(ids(), concurrency=2):
            pass


async def test_a_closed_client_stops_the_stream(sandbox: Sandbox) -> None:
    client = InveterateClient(API_KEY, base_url=sandbox.base_url)
    await client.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        async for _ in client.iter_credits_many(["1"]):
            pass


async def test_connection_failures_are_member_failures(unused_tcp_port: int) -> None:
    base_url = f"http://127.0.0.1:{unused_tcp_port}/v2.0"
    async with InveterateClient(API_KEY, base_url=base_url, max_retries=0) as client:
        stream = client.iter_credits_many(["1", "2"], on_error="collect")
        assert [x async for x in stream] == []
    assert [type(f.error) for f in stream.failures] == [APIConnectionError, APIConnectionError]


@pytest.mark.parametrize(
    ("kwargs", "what"),
    [
        ({"customer_ids": "12345"}, "customer_ids"),
        ({"customer_ids": 5}, "customer_ids"),
        ({"customer_ids": [], "concurrency": 0}, "concurrency"),
        ({"customer_ids": [], "page_size": -1}, "page_size"),
        ({"customer_ids": [], "on_error": "ignore"}, "on_error"),
    ],
)
def test_bad_arguments_are_refused_at_the_call(kwargs: dict[str, object], what: str) -> None:
    client = InveterateClient(API_KEY, base_url="http://127.0.0.1:9/v2.0")
    with pytest.raises(ValueError, match=what):
        client.iter_credits_many(**kwargs)  # type: ignore[arg-type]


async def test_a_plain_break_stops_the_workers_when_the_stream_is_dropped() -> None:
    async with Sandbox(api_key=API_KEY, latency=0.3) as sandbox:
        seed(sandbox, 1, 1)
        # A pool of one: the five workers queue for it, one request in flight at a time.
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
            client = InveterateClient(API_KEY, base_url=sandbox.base_url, session=session)
            ids = ["1"] + [str(n) for n in range(100, 200)]
            async for _ in client.iter_credits_many(ids, concurrency=5):
                break
            # No `async with`: asyncio closes the dropped generator, which cancels the workers.
            await assert_no_connection_held(client)
            # A worker still running would be queued for the pool ahead of this request.
            sent = len(sandbox.requests)
            await assert_no_connection_held(client)
            assert len(sandbox.requests) == sent + 1 < 101
