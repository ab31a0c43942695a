"""The page-at-once path of ``structure_credits`` against the per-entry ``Credit`` hook.

Both must give the same credits (same values, same Decimal digits, same aware times,
the same ``raw`` objects) or fail with the same message, on both JSON parsers.
"""

from __future__ import annotations

import asyncio
import gc
import json
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import attrs
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import given
from hypothesis import strategies as st

from inveterate_async import (
    Credit,
    CreditPage,
    InvalidResponseError,
    InveterateClient,
    _client,
    _converter,
)
from inveterate_async._converter import structure_credit, structure_credits
from inveterate_async._exchange import Response
from inveterate_async._http import codec as _json
from inveterate_async._http.response import read_credits_page

Loads = Callable[[bytes], Any]


@pytest.fixture(params=["stdlib", "fast"])
def loads(request: pytest.FixtureRequest) -> Loads:
    """Each test runs with the standard library parser and with msgspec."""
    if request.param == "stdlib":
        return _json.loads_stdlib
    pytest.importorskip("msgspec")
    return _json.loads_fast


def per_entry(entries: list[Any]) -> tuple[Credit, ...]:
    """The reference: the converter's ``Credit`` hook, one entry at a time."""
    return tuple(structure_credit(entry) for entry in entries)


def outcome(build: Callable[[list[Any]], tuple[Credit, ...]], entries: list[Any]) -> object:
    """What ``build`` gives, comparable exactly: every field's type and repr (so Decimal
    digits and time zones count), the identity of ``raw``; or the error message."""
    try:
        credits = build(entries)
    except ValueError as exc:
        return ("error", str(exc))
    return [
        [(type(value), repr(value)) for value in attrs.astuple(credit, recurse=False)[:-1]]
        + [id(credit.raw)]
        for credit in credits
    ]


def assert_same(entries: list[Any]) -> None:
    assert outcome(structure_credits, entries) == outcome(per_entry, entries)


def fail_if_called(entry: Any, _: Any = None) -> Credit:
    raise AssertionError(f"the per-entry hook was used for {entry!r}")


PAGE = 40  # entries: more than _converter._BY_FIELD_FROM, so built a field at a time


def entry_json(n: int, amount: str = "12.50", **fields: str) -> str:
    values = {
        "id": f'"cr_{n}"',
        "amount": amount,
        "createdAt": '"2024-03-01T12:00:00.250Z"',
        "newBalance": "100.10",
        "reason": '"purchase reward"',
        "note": "null",
        **fields,
    }
    return "{" + ",".join(f'"{key}":{value}' for key, value in values.items()) + "}"


def page_entries(loads: Loads, entries: list[str]) -> list[Any]:
    entries_list: list[Any] = loads(("[" + ",".join(entries) + "]").encode())
    return entries_list


def test_an_ordinary_page_is_built_without_the_per_entry_hook(
    loads: Loads, monkeypatch: pytest.MonkeyPatch
) -> None:
    entries = page_entries(loads, [entry_json(n) for n in range(500)])
    expected = outcome(per_entry, entries)
    monkeypatch.setattr(_converter, "_credit_hook", fail_if_called)
    assert outcome(structure_credits, entries) == expected


def test_exact_digits_aware_times_and_raw_are_kept(
    loads: Loads, monkeypatch: pytest.MonkeyPatch
) -> None:
    entries = page_entries(
        loads,
        [
            entry_json(1, "10.10", createdAt='"2024-03-01T12:00:00Z"'),
            entry_json(2, "-0.000000000000000000000000000001", newBalance="1E+400"),
            entry_json(3, "12345678901234567890.12345678901234567890"),
            entry_json(4, "7", newBalance="0", createdAt='"2024-03-01T12:00:00+02:00"'),
            entry_json(5, "2.50", newBalance="null", createdAt='"2024-03-01T12:00:00"'),
            entry_json(6, createdAt='"2024-03-01T12:00:00z"'),
            *(entry_json(n, newBalance=str(n)) for n in range(7, PAGE + 1)),
        ],
    )
    expected = outcome(per_entry, entries)
    monkeypatch.setattr(_converter, "_credit_hook", fail_if_called)
    assert outcome(structure_credits, entries) == expected
    credits = structure_credits(entries)[:6]
    assert [str(credit.amount) for credit in credits] == [
        "10.10",
        "-1E-30",
        "12345678901234567890.12345678901234567890",
        "7",
        "2.50",
        "12.50",
    ]
    assert all(type(credit.amount) is Decimal for credit in credits)
    assert str(credits[1].new_balance) == "1E+400"
    assert repr(credits[3].new_balance) == "Decimal('0')"
    assert credits[4].new_balance is None
    assert [credit.created_at for credit in credits] == [
        datetime(2024, 3, 1, 12, tzinfo=timezone.utc),
        datetime(2024, 3, 1, 12, 0, 0, 250_000, tzinfo=timezone.utc),
        datetime(2024, 3, 1, 12, 0, 0, 250_000, tzinfo=timezone.utc),
        datetime(2024, 3, 1, 12, tzinfo=timezone(timedelta(hours=2))),
        datetime(2024, 3, 1, 12, tzinfo=timezone.utc),  # naive means UTC
        datetime(2024, 3, 1, 12, tzinfo=timezone.utc),  # lowercase "z"
    ]
    assert all(credit.raw is entry for credit, entry in zip(credits, entries[:6], strict=True))


def test_every_field_of_credit_is_filled(loads: Loads, monkeypatch: pytest.MonkeyPatch) -> None:
    stamp = '"createdAt":"2024-03-01T12:00:00Z"'
    entry = "{" + stamp + ',"amount":1.5,"more":[1,{"a":null}]}'
    entries = page_entries(loads, [entry] * PAGE)
    monkeypatch.setattr(_converter, "_credit_hook", fail_if_called)
    for credit in structure_credits(entries):
        for field in attrs.fields(Credit):
            getattr(credit, field.name)  # an unfilled slot raises AttributeError
    assert structure_credits([]) == ()


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"amount": '"abc"'}, "entry 'cr_20', amount: not a decimal number: 'abc'"),
        ({"amount": "true"}, "entry 'cr_20', amount: not a decimal number: True"),
        ({"amount": "null"}, "entry 'cr_20', amount: missing (entry has no amount)"),
        ({"createdAt": '"yesterday"'}, "entry 'cr_20', createdAt: not an ISO 8601"),
        ({"createdAt": "[]"}, "entry 'cr_20', createdAt: not a timestamp: []"),
        ({"newBalance": '"NaN"'}, "entry 'cr_20', newBalance: not a decimal number: 'NaN'"),
        ({"note": "5"}, "entry 'cr_20', note: not text: 5"),
        ({"reason": "{}"}, "entry 'cr_20', reason: not text: {}"),
    ],
)
def test_a_bad_entry_mid_page_fails_the_whole_page_with_its_message(
    loads: Loads, bad: dict[str, str], message: str
) -> None:
    entries = [entry_json(n, **(bad if n == 20 else {})) for n in range(PAGE)]
    body = '{"data":{"credits":[' + ",".join(entries) + '],"lastCreditEntry":"c"}}'
    response = Response(200, "OK", {"Content-Type": "application/json"}, body.encode())
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_json, "loads", loads)
        with pytest.raises(InvalidResponseError) as info:
            read_credits_page(response)
    assert f"unexpected credit data: {message}" in str(info.value)
    assert_same(page_entries(loads, entries))


def test_what_parsers_never_make_takes_the_per_entry_path() -> None:
    good = {"id": "a", "amount": Decimal("1.00"), "createdAt": "2024-03-01T12:00:00Z"}
    with pytest.raises(ValueError, match=r"^entry is not an object: \[1\]$"):
        structure_credits([good] * PAGE + [[1]])
    for bad in ({"amount": Decimal("NaN")}, {"newBalance": Decimal("-Infinity")}):
        page = [good] * PAGE
        page[7] = {**good, **bad}
        assert_same(page)
    with pytest.raises(
        ValueError, match=r"^entry 'a', newBalance: not a decimal number: Decimal\('-Infinity'\)$"
    ):
        structure_credits(page)


def test_epoch_and_text_values_take_the_per_entry_path(loads: Loads) -> None:
    entries = page_entries(
        loads,
        [
            entry_json(1, '"3.25"'),
            entry_json(2, createdAt="1709294400000", newBalance='"4"'),
            *(entry_json(n) for n in range(3, PAGE + 1)),
        ],
    )
    assert [credit.amount for credit in structure_credits(entries)[:2]] == [
        Decimal("3.25"),
        Decimal("12.50"),
    ]
    assert_same(entries)


def test_small_pages_go_entry_by_entry(loads: Loads, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Any] = []

    def counting_hook(entry: Any, _: Any = None) -> Credit:
        calls.append(entry)
        return structure_credit(entry)

    monkeypatch.setattr(_converter, "_credit_hook", counting_hook)
    small = page_entries(loads, [entry_json(n) for n in range(_converter._BY_FIELD_FROM - 1)])
    assert len(structure_credits(small)) == len(calls) == len(small)
    calls.clear()
    structure_credits(page_entries(loads, [entry_json(n) for n in range(PAGE)]))
    assert calls == []


def test_building_a_page_leaves_no_garbage_cycles(loads: Loads) -> None:
    body = '{"data":{"credits":[' + ",".join(entry_json(n) for n in range(500)) + "]}}"
    response = Response(200, "OK", {"Content-Type": "application/json"}, body.encode())
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_json, "loads", loads)
        gc.collect()
        page = read_credits_page(response)
        assert len(page.credits) == 500
        del page
        assert gc.collect() == 0  # everything was freed by reference counting


# Pages of entries as the API sends them, then a few values changed to anything.
_decimal_text = st.from_regex(
    r"-?(0|[1-9][0-9]{0,25})(\.[0-9]{1,20})?([eE][+-]?[0-9]{1,3})?", fullmatch=True
)
_number = st.one_of(_decimal_text, st.integers().map(str)).map(lambda text: ("number", text))
_stamp = st.datetimes(
    min_value=datetime(1, 1, 2),
    max_value=datetime(9999, 12, 30),
    timezones=st.one_of(st.none(), st.just(timezone.utc), st.timezones()),
).map(lambda moment: moment.isoformat().replace("+00:00", "Z"))
_text = st.one_of(st.none(), st.text(max_size=10))
_usual_entry = st.fixed_dictionaries(
    {
        "id": st.text(max_size=6),
        "amount": _number,
        "createdAt": _stamp,
        "newBalance": st.one_of(st.none(), _number),
        "reason": _text,
        "note": _text,
    }
)
_MISSING = object()
_anything = st.one_of(
    st.just(_MISSING),
    st.none(),
    st.booleans(),
    st.integers(),
    _number,
    _decimal_text,  # decimal text: a string here, not a JSON number
    st.text(max_size=12),
    st.sampled_from(["NaN", "Infinity", "1_000", " 1", "2024-03-01T12:00:00.1234567Z"]),
    st.lists(st.integers(), max_size=2),
)
_changes = st.lists(
    st.tuples(
        st.integers(min_value=0),
        st.sampled_from(["amount", "createdAt", "newBalance", "reason", "note", "other"]),
        _anything,
    ),
    max_size=2,
)


def _render(value: Any) -> str:
    if isinstance(value, tuple):
        return str(value[1])  # a JSON number, exactly as written
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{_render(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)


@given(
    st.lists(_usual_entry, min_size=1, max_size=8),
    st.sampled_from([PAGE, _converter._BY_FIELD_FROM, 3, 0]),
    _changes,
    st.sampled_from(["stdlib", "fast"]),
)
def test_both_paths_agree_on_any_page(
    distinct: list[dict[str, Any]], size: int, changes: list[tuple[int, str, Any]], parser: str
) -> None:
    entries = [dict(distinct[n % len(distinct)]) for n in range(size)]
    for index, key, value in changes:
        if entries:
            entry = entries[index % len(entries)]
            if value is _MISSING:
                entry.pop(key, None)
            else:
                entry[key] = value
    loads: Loads = _json.loads_stdlib
    if parser == "fast":
        loads = getattr(_json, "loads_fast", _json.loads_stdlib)
    assert_same(loads(("[" + ",".join(map(_render, entries)) + "]").encode()))


Handler = Callable[[web.Request], Awaitable[web.Response]]


def page_response(entries: list[str], cursor: str | None) -> web.Response:
    """A page as the API sends it: ``entries`` as JSON text, then the next cursor."""
    after = "null" if cursor is None else f'"{cursor}"'
    body = (
        f'{{"message":"ok","data":{{"credits":[{",".join(entries)}],"lastCreditEntry":{after}}}}}'
    )
    return web.Response(body=body, content_type="application/json")


@asynccontextmanager
async def client_of(handle: Handler) -> AsyncIterator[InveterateClient]:
    """A client of a local server that answers every ledger request with ``handle``."""
    app = web.Application()
    app.router.add_get("/v2.0/admin/members/{id}/credits", handle)
    async with TestServer(app, host="127.0.0.1") as server:
        base_url = str(server.make_url("/v2.0"))
        async with InveterateClient("key", base_url=base_url, max_retries=0) as client:
            yield client


async def test_a_page_is_let_go_before_the_next_page_is_requested() -> None:
    # Credits the caller has dropped are freed by reference counting before the next
    # request, so a long ledger's credits die young instead of piling up for the
    # garbage collector.
    seen: list[weakref.ref[Credit]] = []
    alive_at_next_request: list[int] = []

    async def handle(request: web.Request) -> web.Response:
        last = request.query.get("lastCreditEntry")
        if last is not None:
            alive_at_next_request.append(sum(ref() is not None for ref in seen))
        start = 0 if last is None else int(last)
        entries = [entry_json(n) for n in range(start, start + PAGE)]
        return page_response(entries, None if start else str(PAGE))

    async with client_of(handle) as client:
        async for credit in client.iter_credits("1", page_size=PAGE):
            seen.append(weakref.ref(credit))
    assert len(seen) == 2 * PAGE
    # Only the loop variable still holds a credit of the first page.
    assert alive_at_next_request == [1]


async def settled(served: list[str]) -> None:
    """Let the loop run until no request has arrived for 50 turns of 5 ms (bounded)."""
    quiet, count = 0, -1
    for _ in range(2000):
        quiet = quiet + 1 if len(served) == count else 0
        if quiet == 50:
            return
        count = len(served)
        await asyncio.sleep(0.005)
    raise AssertionError("requests never stopped arriving")


async def test_a_worker_asks_for_the_next_page_only_once_its_page_is_taken() -> None:
    # Each worker holds one page until the consumer takes it: a consumer that stops
    # pulling stops the fetching.
    served: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        served.append(request.match_info["id"])
        last = request.query.get("lastCreditEntry")
        return page_response([entry_json(n) for n in range(PAGE)], None if last else "second")

    read = 0
    ids = [str(n) for n in range(12)]
    async with (
        client_of(handle) as client,
        client.iter_credits_many(ids, concurrency=4, page_size=PAGE) as stream,
    ):
        async for customer_id, _credit in stream:
            read += 1
            if read == 1:
                # The worker of the page being delivered fetches that member's second
                # page; the three others wait with their first page.
                for _ in range(2000):
                    if len(served) == 5:
                        break
                    await asyncio.sleep(0.005)
                await settled(served)
                assert sorted(served) == sorted([*ids[:4], str(customer_id)])
    assert read == 12 * 2 * PAGE
    assert len(served) == 12 * 2


@asynccontextmanager
async def readers_of(
    monkeypatch: pytest.MonkeyPatch, handle: Handler
) -> AsyncIterator[tuple[InveterateClient, dict[str, asyncio.Task[Any] | None]]]:
    """A client of ``handle``'s server, and which task read each page (by its X-Page)."""
    readers: dict[str, asyncio.Task[Any] | None] = {}

    def recording(response: Response) -> CreditPage:
        readers[response.headers["X-Page"]] = asyncio.current_task()
        return read_credits_page(response)

    monkeypatch.setattr(_client, "read_credits_page", recording)
    async with client_of(handle) as client:
        yield client, readers


def labelled_page(request: web.Request) -> web.Response:
    """Two pages per member, each labelled ``<member>/<page>`` in an X-Page header."""
    member, last = request.match_info["id"], request.query.get("lastCreditEntry")
    response = page_response([entry_json(n) for n in range(PAGE)], None if last else "second")
    response.headers["X-Page"] = f"{member}/{2 if last else 1}"
    return response


async def test_a_consumer_that_never_awaits_reads_every_page_itself(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Workers only run while the consumer waits for work, so every response is handed
    # over unread and made into credits just before they are delivered.
    async def handle(request: web.Request) -> web.Response:
        return labelled_page(request)

    ids = [str(n) for n in range(12)]
    async with readers_of(monkeypatch, handle) as (client, readers):
        delivered = [
            cid async for cid, _ in client.iter_credits_many(ids, concurrency=4, page_size=PAGE)
        ]
    assert len(delivered) == 12 * 2 * PAGE
    assert sorted(readers) == sorted(f"{n}/{page}" for n in ids for page in (1, 2))
    assert set(readers.values()) == {asyncio.current_task()}


async def test_pages_arriving_while_the_consumer_awaits_are_read_by_their_workers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # While the caller's loop awaits (a database write, say), a page that arrives is
    # read by its worker at once instead of adding its reading to the caller's time.
    release_b = asyncio.Event()

    async def handle(request: web.Request) -> web.Response:
        if request.match_info["id"] == "b":
            await release_b.wait()
        return labelled_page(request)

    got: dict[str, int] = {}
    async with readers_of(monkeypatch, handle) as (client, readers):
        consumer = asyncio.current_task()
        stream = client.iter_credits_many(["a", "b"], concurrency=2, page_size=PAGE)
        async with stream:
            async for customer_id, _credit in stream:
                got[str(customer_id)] = got.get(str(customer_id), 0) + 1
                if not release_b.is_set():
                    assert list(readers) == ["a/1"]
                    release_b.set()
                    for _ in range(2000):  # busy in "our" await until both have arrived
                        if len(readers) == 3:
                            break
                        await asyncio.sleep(0.005)
    assert got == {"a": 2 * PAGE, "b": 2 * PAGE}
    assert readers["a/1"] is consumer
    assert readers["a/2"] is not consumer
    assert readers["b/1"] is not consumer
    assert len(readers) == 4


async def test_a_bad_entry_fails_its_member_in_the_fan_out_with_the_position_before_it() -> None:
    # A page is read whole before any of its credits is delivered: a bad entry on a
    # later page fails that member where it stood, and no credit of that page reaches
    # the caller.
    async def handle(request: web.Request) -> web.Response:
        member = request.match_info["id"]
        last = request.query.get("lastCreditEntry")
        entries = [entry_json(n) for n in range(PAGE)]
        if member == "bad" and last:
            entries[PAGE // 2] = entry_json(7, amount='"twelve"')
        return page_response(entries, None if last else "second")

    got: dict[str, int] = {}
    async with client_of(handle) as client:
        stream = client.iter_credits_many(
            ["good", "bad"], concurrency=2, page_size=PAGE, on_error="collect"
        )
        async with stream:
            async for customer_id, _credit in stream:
                got[str(customer_id)] = got.get(str(customer_id), 0) + 1
    assert got == {"good": 2 * PAGE, "bad": PAGE}
    (failure,) = stream.failures
    assert failure.customer_id == "bad"
    assert failure.cursor == "second"
    assert isinstance(failure.error, InvalidResponseError)
    assert "entry 'cr_7', amount" in str(failure.error)
