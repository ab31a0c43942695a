"""Resume as a first-class idea: positions, page events with checkpoints, fail-fast."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from inveterate_async import (
    BadRequestError,
    CreditPage,
    InveterateClient,
    LedgerPage,
    LedgerPosition,
    MemberFinished,
    NotFoundError,
    StreamAbortedError,
)
from inveterate_async.testing import Sandbox

from .conftest import API_KEY


def seed(sandbox: Sandbox, members: int, credits: int) -> dict[str, list[str]]:
    ledgers = {}
    for m in range(1, members + 1):
        amounts = [f"{m}.{n:02d}" for n in range(1, credits + 1)]
        sandbox.add_credits(str(m), amounts)
        ledgers[str(m)] = amounts
    return ledgers


def test_positions_tell_start_after_and_finished_apart() -> None:
    start, after, finished = (
        LedgerPosition.START,
        LedgerPosition.after("c1"),
        LedgerPosition.FINISHED,
    )
    assert len({start, after, finished}) == 3
    assert (start.cursor, start.done) == (None, False)
    assert (after.cursor, after.done) == ("c1", False)
    assert (finished.cursor, finished.done) == (None, True)
    for position in (start, after, finished, LedgerPosition.after('{"pk":"m#1","sk":"x"}')):
        assert LedgerPosition.from_json(position.to_json()) == position


@pytest.mark.parametrize(
    "text",
    [
        "",
        "null",
        "[]",
        '{"cursor":null}',
        '{"cursor":"a","done":true}',
        '{"cursor":1,"done":false}',
        '{"cursor":null,"done":0}',
    ],
)
def test_malformed_positions_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"position|cursor"):
        LedgerPosition.from_json(text)


def test_position_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="cursor"):
        LedgerPosition.after("")
    with pytest.raises(ValueError, match="finished"):
        LedgerPosition("c", True)


async def test_pages_say_whether_they_are_last_and_where_to_resume(
    sandbox: Sandbox, client: InveterateClient
) -> None:
    seed(sandbox, 1, 5)
    pages = [page async for page in client.iter_credit_pages("1", page_size=2)]
    assert [page.is_last for page in pages] == [False, False, True]
    assert pages[0].position == LedgerPosition.after(pages[0].next_cursor or "")
    assert pages[-1].position == LedgerPosition.FINISHED


async def test_resuming_from_each_position_reads_exactly_the_rest(
    sandbox: Sandbox, client: InveterateClient
) -> None:
    ledgers = seed(sandbox, 1, 7)
    pages: list[CreditPage] = [page async for page in client.iter_credit_pages("1", page_size=3)]
    for done, page in enumerate(pages, start=1):
        rest = [
            str(c.amount) async for c in client.iter_credits("1", page_size=3, start=page.position)
        ]
        assert [str(c.amount) for p in pages[:done] for c in p.credits] + rest == ledgers["1"]
    sandbox.reset_stats()
    assert [c async for c in client.iter_credits("1", start=LedgerPosition.FINISHED)] == []
    assert sandbox.requests == [], "a finished member sends nothing"
    with pytest.raises(ValueError, match="not both"):
        client.iter_credits("1", cursor="x", start=LedgerPosition.START)


async def test_fan_out_resumes_members_from_their_positions(
    sandbox: Sandbox, client: InveterateClient
) -> None:
    ledgers = seed(sandbox, 4, 5)
    first = await anext(client.iter_credit_pages("2", page_size=2))
    positions = {
        "1": LedgerPosition.FINISHED,
        "2": first.position,
        "3": LedgerPosition.START,
        "4": LedgerPosition.FINISHED,
    }
    sandbox.reset_stats()
    got: dict[str, list[str]] = {}
    async for customer_id, credit in client.iter_credits_many(positions, page_size=2):
        got.setdefault(str(customer_id), []).append(str(credit.amount))
    assert got == {"2": ledgers["2"][2:], "3": ledgers["3"]}
    assert {r.customer_id for r in sandbox.requests} == {"2", "3"}
    pairs = [("3", LedgerPosition.START), ("4", LedgerPosition.FINISHED)]
    amounts = [c.amount async for _, c in client.iter_credits_many(pairs)]
    assert [str(a) for a in amounts] == ledgers["3"]


async def test_events_carry_pages_positions_and_member_finished(
    sandbox: Sandbox, client: InveterateClient
) -> None:
    ledgers = seed(sandbox, 6, 5)
    sandbox.fail_next(404, customer_id="4", times=3)
    by_member: dict[str, list[object]] = {}
    stream = client.iter_credits_many(list(ledgers), page_size=2, on_error="collect")
    async with stream:
        async for event in stream.events():
            by_member.setdefault(str(event.customer_id), []).append(event)
    for member, events in by_member.items():
        *pages, finished = events
        assert isinstance(finished, MemberFinished)
        if member == "4":
            assert pages == []
            assert isinstance(finished.error, NotFoundError)
            assert finished.position == LedgerPosition.START
            continue
        assert all(isinstance(page, LedgerPage) for page in pages)
        assert [str(c.amount) for p in pages for c in p.credits] == ledgers[member]  # type: ignore[attr-defined]
        assert pages[-1].position == LedgerPosition.FINISHED  # type: ignore[attr-defined]
        assert finished == MemberFinished(member, LedgerPosition.FINISHED)
    assert [f.customer_id for f in stream.failures] == ["4"]
    assert stream.failures[0].position == LedgerPosition.START
    with pytest.raises(RuntimeError, match="read once"):
        stream.__aiter__()


async def test_a_worker_that_stops_anywhere_resumes_exactly_from_its_checkpoints(
    sandbox: Sandbox, client: InveterateClient
) -> None:
    """Write a page, then record its position: stopping after any page never loses or
    repeats a credit."""
    ledgers = seed(sandbox, 9, 7)
    for stop_after in (1, 4, 11, 1000):
        written: dict[str, list[str]] = {}
        checkpoints: dict[str | int, LedgerPosition] = dict.fromkeys(ledgers, LedgerPosition.START)
        rounds = 0
        while rounds < 200 and not all(p.done for p in checkpoints.values()):
            rounds += 1
            stream = client.iter_credits_many(checkpoints.copy(), page_size=3, concurrency=3)
            seen = 0
            async with stream:
                async for event in stream.events():
                    if isinstance(event, LedgerPage):
                        written.setdefault(str(event.customer_id), []).extend(
                            str(c.amount) for c in event.credits
                        )
                        checkpoints[event.customer_id] = event.position
                        seen += 1
                        if seen == stop_after:
                            break  # a crash right after recording a checkpoint
        assert written == ledgers, f"stopping after {stop_after} pages, {rounds} rounds"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_a_wrong_key_stops_the_stream_after_a_handful_of_requests(sandbox: Sandbox) -> None:
    seed(sandbox, 3, 1)
    async with InveterateClient("wrong-key", base_url=sandbox.base_url) as client:
        stream = client.iter_credits_many(map(str, range(1, 501)), on_error="collect")
        with pytest.raises(StreamAbortedError, match="key was refused") as info:
            async for _ in stream:
                pass
    assert isinstance(info.value.error, BadRequestError)
    assert info.value.failed == 5
    assert len(sandbox.requests) <= 5 + 7, "at most the members already in flight more"


async def test_an_unreachable_api_stops_the_stream() -> None:
    base_url = f"http://127.0.0.1:{closed_port()}/v2.0"
    async with InveterateClient(API_KEY, base_url=base_url, backoff_base=0) as client:
        stream = client.iter_credits_many(map(str, range(1, 10_001)), on_error="collect")
        with pytest.raises(StreamAbortedError, match="cannot be reached"):
            async for _ in stream:
                pass
        assert stream.members_done < 100


async def test_member_specific_failures_never_abort(sandbox: Sandbox) -> None:
    seed(sandbox, 20, 1)
    async with InveterateClient(API_KEY, base_url=sandbox.base_url, backoff_base=0) as client:
        sandbox.fail_next(404, times=12)
        stream = client.iter_credits_many(map(str, range(1, 21)), on_error="collect")
        got = [c async for _, c in stream]
    assert len(got) + len(stream.failures) == 20
    assert len(stream.failures) == 12


async def test_abort_after_none_reads_every_member(sandbox: Sandbox) -> None:
    async with InveterateClient("wrong-key", base_url=sandbox.base_url) as client:
        stream = client.iter_credits_many(
            map(str, range(1, 31)), on_error="collect", abort_after=None
        )
        assert [c async for c in stream] == []
    assert len(stream.failures) == 30
    with pytest.raises(ValueError, match="abort_after"):
        client.iter_credits_many(["1"], abort_after=0)


async def test_ids_from_an_async_iterable_of_pairs(
    sandbox: Sandbox, client: InveterateClient
) -> None:
    ledgers = seed(sandbox, 3, 2)

    async def pairs() -> AsyncIterator[tuple[str | int, LedgerPosition]]:
        for member in ledgers:
            yield member, LedgerPosition.START

    got = sorted([(str(m), c.amount) async for m, c in client.iter_credits_many(pairs())])
    assert got == sorted((m, Decimal(a)) for m, amounts in ledgers.items() for a in amounts)
