"""The client end to end against the real Sandbox server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inveterate_async import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    Credit,
    InvalidResponseError,
    InveterateClient,
    NotFoundError,
    PaginationError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    __version__,
)
from inveterate_async.testing import Sandbox

from .conftest import API_KEY, ScriptedServer, assert_no_connection_held


class SleepRecorder:
    """Stands in for asyncio.sleep so retry waits are recorded, not waited."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def api(sandbox: Sandbox | ScriptedServer, **kwargs: Any) -> InveterateClient:
    kwargs.setdefault("backoff_base", 0)
    return InveterateClient(API_KEY, base_url=sandbox.base_url, **kwargs)


def gets(sandbox: Sandbox) -> list[Any]:
    return [r for r in sandbox.requests if r.method == "GET"]


def posts(sandbox: Sandbox) -> list[Any]:
    return [r for r in sandbox.requests if r.method == "POST"]


# --- reading -----------------------------------------------------------------


async def test_iterates_every_credit_across_pages_in_order(
    sandbox: Sandbox, client: InveterateClient
) -> None:
    amounts = [f"{n}.{n % 100:02d}" for n in range(1, 121)]
    sandbox.add_credits("42", amounts)
    credits = [c async for c in client.iter_credits("42", page_size=50)]
    assert [str(c.amount) for c in credits] == amounts
    assert all(isinstance(c, Credit) and c.created_at is not None for c in credits)
    assert credits[-1].new_balance == sum(Decimal(a) for a in amounts)
    assert [r.query.get("limit") for r in gets(sandbox)] == [["50"]] * 3
    assert gets(sandbox)[0].cursor is None


async def test_pages_carry_cursors_and_raw_bodies(
    sandbox: Sandbox, client: InveterateClient
) -> None:
    sandbox.add_credits("7", ["1.00"] * 5)
    pages = [p async for p in client.iter_credit_pages("7", page_size=2)]
    assert [len(p.credits) for p in pages] == [2, 2, 1]
    assert pages[-1].next_cursor is None
    assert pages[0].next_cursor == gets(sandbox)[1].cursor
    assert pages[0].raw["data"]["lastCreditEntry"] == pages[0].next_cursor
    assert pages[0].credits[0].raw["id"] == sandbox.ledger("7")[0]["id"]


async def test_default_page_size_is_the_servers(sandbox: Sandbox, client: InveterateClient) -> None:
    sandbox.add_credits("8", ["1"] * 60)
    assert len([c async for c in client.iter_credits("8")]) == 60
    assert "limit" not in gets(sandbox)[0].query


async def test_resume_from_a_cursor(sandbox: Sandbox, client: InveterateClient) -> None:
    sandbox.add_credits("42", [str(n) for n in range(1, 11)])
    first = await client.get_credits_page("42", limit=4)
    assert [str(c.amount) for c in first.credits] == ["1", "2", "3", "4"]
    rest = [c async for c in client.iter_credits("42", page_size=4, cursor=first.next_cursor)]
    assert [str(c.amount) for c in rest] == [str(n) for n in range(5, 11)]


async def test_unknown_member_has_an_empty_ledger(client: InveterateClient) -> None:
    assert [c async for c in client.iter_credits("nobody")] == []


@pytest.mark.parametrize(
    "customer_id",
    ["a/b", "../admin", "..", ".", "x?limit=1", "x#frag", "two words", "Zoë-会员", 9001],
)
async def test_odd_customer_ids_stay_one_path_segment(
    sandbox: Sandbox, client: InveterateClient, customer_id: str | int
) -> None:
    sandbox.add_credits(customer_id, ["3.30"])
    (credit,) = [c async for c in client.iter_credits(customer_id)]
    assert credit.amount == Decimal("3.30")
    await client.create_credit(customer_id, "1.10")
    assert sandbox.balance(customer_id) == Decimal("4.40")
    assert {r.customer_id for r in sandbox.requests} == {str(customer_id)}


async def test_object_cursors_are_sent_back_as_compact_json() -> None:
    def cursor(member: str, entry: Mapping[str, Any]) -> Mapping[str, Any]:
        return {"pk": f"member#{member}", "sk": entry["id"], "n": 1.50, "u": "é & ü"}

    async with Sandbox(api_key=API_KEY, cursor_factory=cursor) as sandbox, api(sandbox) as client:
        sandbox.add_credits("42", ["1", "2", "3"])
        credits = [c async for c in client.iter_credits("42", page_size=1)]
        assert len(credits) == 3
        sent = gets(sandbox)[1].cursor
        assert json.loads(sent) == {
            "pk": "member#42",
            "sk": credits[0].raw["id"],
            "n": 1.5,
            "u": "é & ü",
        }
        assert sent == json.dumps(json.loads(sent), separators=(",", ":"))


@pytest.fixture(scope="module")
def text_cursors() -> dict[str, str]:
    return {}


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=st.text(min_size=1))
async def test_any_text_cursor_round_trips_through_the_server(text: str) -> None:
    sandbox = Sandbox(api_key=API_KEY, cursor_factory=lambda m, e: text)
    async with sandbox, api(sandbox) as client:
        sandbox.add_credits("1", ["1", "2"])
        credits = [c async for c in client.iter_credits("1", page_size=1)]
    assert [c.amount for c in credits] == [1, 2]
    assert gets(sandbox)[1].cursor == text


async def test_pages_are_strict_about_cursors_they_did_not_issue(client: InveterateClient) -> None:
    with pytest.raises(BadRequestError, match="lastCreditEntry"):
        await client.get_credits_page("42", cursor="forged")


async def test_repeated_cursor_raises_pagination_error() -> None:
    async with Sandbox(api_key=API_KEY, cursor_factory=lambda m, e: "same") as sandbox:
        sandbox.add_credits("1", ["1", "2", "3", "4"])
        async with api(sandbox) as client:
            seen: list[Credit] = []

            async def consume(cursor: str | None = None) -> None:
                async for credit in client.iter_credits("1", page_size=1, cursor=cursor):
                    seen.append(credit)

            with pytest.raises(PaginationError, match="same"):
                await consume()
            assert len(seen) == 2
            # The caller's starting cursor counts as seen.
            with pytest.raises(PaginationError):
                await consume("same")


async def test_empty_page_with_a_cursor_is_followed(scripted: ScriptedServer) -> None:
    scripted.answer(body={"message": "", "data": {"credits": [], "lastCreditEntry": "c1"}})
    scripted.answer(
        body={"message": "", "data": {"credits": [{"amount": 2.5}]}, "lastCreditEntry": None}
    )
    async with api(scripted) as client:
        credits = [c async for c in client.iter_credits("1")]
    assert [c.amount for c in credits] == [Decimal("2.5")]
    assert scripted.requests[1].raw_path.endswith("?lastCreditEntry=c1")


async def test_malformed_entry_is_an_invalid_response(scripted: ScriptedServer) -> None:
    scripted.answer(body={"message": "", "data": {"credits": [{"note": "no amount"}]}})
    async with api(scripted) as client:
        with pytest.raises(InvalidResponseError, match="no amount"):
            await client.get_credits_page("1")


# --- writing -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "stored"),
    [
        (Decimal("10.10"), "10.10"),
        ("-2.50", "-2.50"),
        (7, "7"),
        ("12345678901234567890.123456789", "12345678901234567890.123456789"),
    ],
)
async def test_amounts_keep_exact_digits_both_ways(
    sandbox: Sandbox, client: InveterateClient, amount: Any, stored: str
) -> None:
    result = await client.create_credit("42", amount, note="Merci — fidélité")
    assert result.message
    (entry,) = sandbox.ledger("42")
    assert str(entry["amount"]) == stored
    assert entry["note"] == "Merci — fidélité"
    assert posts(sandbox)[0].body.startswith(b'{"amount":' + stored.encode() + b",")
    (credit,) = [c async for c in client.iter_credits("42")]
    assert str(credit.amount) == stored
    assert str(credit.new_balance) == stored


async def test_create_returns_the_servers_message_and_data(
    sandbox: Sandbox, client: InveterateClient
) -> None:
    result = await client.create_credit("42", "5", force=True)
    assert result.data["amount"] == Decimal("5")
    assert posts(sandbox)[0].json() == {"amount": 5, "force": True}


@pytest.mark.parametrize("amount", [0, "0.00", "NaN", Decimal("Infinity"), True, "ten", None])
async def test_bad_amount_sends_nothing(
    sandbox: Sandbox, client: InveterateClient, amount: Any
) -> None:
    with pytest.raises(ValueError, match="amount"):
        await client.create_credit("42", amount)
    assert sandbox.requests == []


async def test_bad_arguments_to_iteration_fail_before_sending(
    sandbox: Sandbox, client: InveterateClient
) -> None:
    with pytest.raises(ValueError, match="page_size"):
        client.iter_credits("1", page_size=0)
    with pytest.raises(ValueError, match="page_size"):
        client.iter_credit_pages("1", page_size=True)
    with pytest.raises(ValueError, match="cursor"):
        client.iter_credits("1", cursor=5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="customer_id"):
        await client.get_credits_page(True)
    # Several bad arguments: the first in the signature's order is named.
    with pytest.raises(ValueError, match="customer_id"):
        client.iter_credit_pages(None, page_size=0, cursor=5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="page_size"):
        client.iter_credits("1", page_size=0, cursor=5)  # type: ignore[arg-type]
    assert sandbox.requests == []


# --- errors ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (409, APIStatusError),
        (429, RateLimitError),
        (500, ServerError),
        (502, ServerError),
    ],
)
async def test_each_status_raises_its_class_with_the_servers_message(
    sandbox: Sandbox, status: int, error_class: type[APIStatusError]
) -> None:
    sandbox.fail_next(status, times=3, body={"message": f"nope {status}", "data": {"code": status}})
    async with api(sandbox, max_retries=2) as client:
        with pytest.raises(error_class) as info:
            await client.get_credits_page("42")
    error = info.value
    assert type(error) is error_class
    assert (error.status, error.message, error.data) == (status, f"nope {status}", {"code": status})
    assert f"nope {status}" in str(error)
    assert "/admin/members/42/credits" in error.url


async def test_wrong_key_is_a_bad_request_as_the_spec_says(sandbox: Sandbox) -> None:
    async with InveterateClient("wrong-key", base_url=sandbox.base_url) as client:
        with pytest.raises(BadRequestError, match="Invalid API key"):
            await client.get_credits_page("42")


async def test_invalid_post_body_is_a_bad_request_and_nothing_is_applied(
    sandbox: Sandbox, client: InveterateClient
) -> None:
    # The client refuses bad input itself, so use the raw transport to reach the server's check.
    async with aiohttp.ClientSession() as session:
        resp = await session.post(
            f"{sandbox.base_url}/admin/members/42/credits",
            data=b'{"amount":0}',
            headers={"X-Inveterate-Api-Key": API_KEY, "Content-Type": "application/json"},
        )
        assert resp.status == 400
        resp.release()
    assert sandbox.ledger("42") == []


async def test_html_502_from_a_proxy_is_readable(scripted: ScriptedServer) -> None:
    page = b"<html><body><h1>502 Bad Gateway</h1><p>nginx</p></body></html>"
    scripted.answer(502, page, **{"Content-Type": "text/html"})
    async with api(scripted, max_retries=0) as client:
        with pytest.raises(ServerError) as info:
            await client.get_credits_page("1")
    assert info.value.message == "HTTP 502 Bad Gateway: 502 Bad Gateway nginx"
    assert info.value.body == page


async def test_non_json_success_is_an_invalid_response(scripted: ScriptedServer) -> None:
    scripted.answer(200, b"<html>maintenance</html>")
    async with api(scripted) as client:
        with pytest.raises(InvalidResponseError, match="not JSON"):
            await client.get_credits_page("1")


# --- retries -----------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
async def test_reads_are_retried_on_transient_statuses(sandbox: Sandbox, status: int) -> None:
    sandbox.add_credits("42", ["1.25"])
    sandbox.fail_next(status, times=2)
    sleep = SleepRecorder()
    async with api(sandbox, sleep=sleep, backoff_base=0.5) as client:
        credits = [c async for c in client.iter_credits("42")]
    assert [c.amount for c in credits] == [Decimal("1.25")]
    assert len(gets(sandbox)) == 3
    assert len(sleep.waits) == 2
    assert 0 <= sleep.waits[0] <= 0.5
    assert 0 <= sleep.waits[1] <= 1.0


async def test_retry_after_replaces_the_backoff(sandbox: Sandbox) -> None:
    sandbox.fail_next(429, retry_after=7)
    sandbox.fail_next(503, retry_after=0)
    sandbox.fail_next(503, retry_after=3600)
    sleep = SleepRecorder()
    async with api(sandbox, sleep=sleep, max_retries=3) as client:
        page = await client.get_credits_page("42")
    assert page.credits == ()
    assert sleep.waits == [7.0, 0.0, 60.0]


async def test_retries_give_up_after_max_retries(sandbox: Sandbox) -> None:
    sandbox.fail_next(503, times=5, retry_after=1)
    sleep = SleepRecorder()
    async with api(sandbox, sleep=sleep, max_retries=2) as client:
        with pytest.raises(ServerError) as info:
            await client.get_credits_page("42")
    assert info.value.outcome_unknown is False
    assert len(sandbox.requests) == 3
    assert sleep.waits == [1.0, 1.0]


async def test_retry_during_iteration_re_requests_the_same_page(sandbox: Sandbox) -> None:
    sandbox.add_credits("42", [str(n) for n in range(1, 7)])
    async with api(sandbox) as client:
        pages = client.iter_credit_pages("42", page_size=2)
        first = await pages.__anext__()
        sandbox.fail_next(500)
        second = await pages.__anext__()
        await pages.aclose()
    assert [str(c.amount) for c in first.credits + second.credits] == ["1", "2", "3", "4"]
    assert [r.cursor for r in gets(sandbox)[1:]] == [first.next_cursor, first.next_cursor]


async def test_write_is_never_retried_after_a_server_error(sandbox: Sandbox) -> None:
    sandbox.fail_next(
        500, method="POST", apply=True, body={"message": "backend timeout", "data": {}}
    )
    sleep = SleepRecorder()
    async with api(sandbox, sleep=sleep, max_retries=5) as client:
        with pytest.raises(ServerError) as info:
            await client.create_credit("42", "10.00")
    assert info.value.outcome_unknown is True
    assert "may have been applied" in str(info.value)
    assert "backend timeout" in str(info.value)
    assert len(posts(sandbox)) == 1
    assert sleep.waits == []
    assert sandbox.balance("42") == Decimal("10.00")


async def test_write_is_retried_on_429(sandbox: Sandbox) -> None:
    sandbox.fail_next(429, method="POST", retry_after=2)
    sleep = SleepRecorder()
    async with api(sandbox, sleep=sleep) as client:
        await client.create_credit("42", "10.00")
    assert len(posts(sandbox)) == 2
    assert sleep.waits == [2.0]
    assert sandbox.balance("42") == Decimal("10.00")


async def test_write_dropped_mid_request_is_not_retried(sandbox: Sandbox) -> None:
    sandbox.fail_next(method="POST", disconnect=True, apply=True)
    async with api(sandbox, max_retries=3) as client:
        with pytest.raises(APIConnectionError) as info:
            await client.create_credit("42", "10.00")
    assert info.value.outcome_unknown is True
    assert "may have been applied" in str(info.value)
    assert len(posts(sandbox)) == 1
    assert sandbox.balance("42") == Decimal("10.00")


async def test_read_dropped_mid_request_is_retried(sandbox: Sandbox) -> None:
    sandbox.add_credits("42", ["4"])
    sandbox.fail_next(disconnect=True)
    async with api(sandbox) as client:
        assert [c.amount async for c in client.iter_credits("42")] == [4]
    assert len(gets(sandbox)) == 2


async def test_connection_refused_write_is_retried_and_outcome_known(unused_tcp_port: int) -> None:
    sleep = SleepRecorder()
    base_url = f"http://127.0.0.1:{unused_tcp_port}/v2.0"
    async with InveterateClient(API_KEY, base_url=base_url, sleep=sleep, max_retries=2) as client:
        with pytest.raises(APIConnectionError) as info:
            await client.create_credit("42", "1")
        assert info.value.outcome_unknown is False
        assert "may have been applied" not in str(info.value)
        assert len(sleep.waits) == 2
        with pytest.raises(APIConnectionError) as read_info:
            await client.get_credits_page("42")
        assert read_info.value.outcome_unknown is False


async def test_timeouts(sandbox: Sandbox) -> None:
    async with Sandbox(api_key=API_KEY, latency=5) as slow:
        async with api(slow, timeout=0.05, max_retries=1) as client:
            with pytest.raises(APITimeoutError) as read_info:
                await client.get_credits_page("42")
            with pytest.raises(APITimeoutError) as write_info:
                await client.create_credit("42", "1")
        assert read_info.value.outcome_unknown is False
        assert write_info.value.outcome_unknown is True
        # The message names the limit that ran out.
        assert "no answer within the attempt timeout (total 0.05 s)" in str(read_info.value)
        assert len(gets(slow)) == 2
        assert len(posts(slow)) == 1


# --- safety ------------------------------------------------------------------


async def test_redirects_are_not_followed_and_the_key_stays_home(scripted: ScriptedServer) -> None:
    async with Sandbox(api_key=API_KEY) as elsewhere:
        for status in (301, 302, 307, 308):
            scripted.answer(status, b"", Location=f"{elsewhere.base_url}/admin/members/1/credits")
        async with api(scripted) as client:
            for status in (301, 302, 307, 308):
                with pytest.raises(APIStatusError) as info:
                    await client.create_credit(
                        "1", "5"
                    ) if status >= 307 else await client.get_credits_page("1")
                assert info.value.status == status
        assert elsewhere.requests == []
    assert len(scripted.requests) == 4


async def test_key_never_in_reprs_errors_or_logs(
    sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="inveterate_async")
    echo = {"message": f"key {API_KEY} is suspended", "data": {"key": API_KEY}}
    sandbox.fail_next(403, body=echo)
    sandbox.fail_next(500, times=3, body=echo, retry_after=0)
    async with api(sandbox) as client:
        errors: list[Exception] = []
        for _ in range(2):
            try:
                await client.get_credits_page("42")
            except APIStatusError as exc:
                errors.append(exc)
        assert API_KEY not in repr(client)
    assert [type(e) for e in errors] == [PermissionDeniedError, ServerError]
    for error in errors:
        assert isinstance(error, APIStatusError)
        shown = [
            str(error),
            repr(error),
            error.message,
            repr(error.data),
            repr(error.headers),
            error.url,
        ]
        assert not [text for text in shown if API_KEY in text]
        assert API_KEY.encode() not in error.body
    assert API_KEY not in caplog.text
    assert sandbox.requests[0].headers["X-Inveterate-Api-Key"] == API_KEY


async def test_each_attempt_is_logged_at_debug(
    sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="inveterate_async")
    sandbox.fail_next(503)
    async with api(sandbox) as client:
        await client.get_credits_page("42")
    lines = [r.getMessage() for r in caplog.records if r.name == "inveterate_async"]
    assert len(lines) == 2
    assert lines[0].startswith("GET /v2.0/admin/members/42/credits -> 503 (attempt 1, ")
    assert lines[1].startswith("GET /v2.0/admin/members/42/credits -> 200 (attempt 2, ")
    assert lines[1].endswith(" ms)")


# --- connections and lifecycle -------------------------------------------------


async def test_breaking_out_early_holds_no_connection(sandbox: Sandbox) -> None:
    sandbox.add_credits("42", ["1"] * 10)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
        async with api(sandbox, session=session, timeout=10) as client:
            async for _ in client.iter_credits("42", page_size=2):
                break
            half_used = client.iter_credits("42", page_size=2)
            assert (await half_used.__anext__()).amount == 1
            # A pool of one: neither the abandoned nor the paused generator holds it.
            await assert_no_connection_held(client, "42")
            assert len([c async for c in client.iter_credits("42", page_size=3)]) == 10
            await half_used.aclose()
        assert not session.closed


async def test_cancelling_mid_request_releases_the_connection() -> None:
    async with Sandbox(api_key=API_KEY, latency=30) as slow:
        connector = aiohttp.TCPConnector(limit=1)
        async with aiohttp.ClientSession(connector=connector) as session:
            client = api(slow, session=session)

            async def consume() -> None:
                async for _ in client.iter_credits("42"):
                    pass

            task = asyncio.create_task(consume())
            for _ in range(1000):
                if slow.in_flight:
                    break
                await asyncio.sleep(0.01)
            assert slow.in_flight == 1
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            slow.latency = 0
            # The pool of one is free again: the cancelled request gave its connection back.
            await assert_no_connection_held(client, "42")
            await client.aclose()
            assert not session.closed


async def test_owned_session_is_closed_and_close_is_idempotent(sandbox: Sandbox) -> None:
    client = api(sandbox)
    await client.get_credits_page("1")
    await client.aclose()
    await client.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await client.get_credits_page("1")


async def test_settings_from_the_environment(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INVETERATE_API_KEY", API_KEY)
    monkeypatch.setenv("INVETERATE_BASE_URL", sandbox.base_url)
    async with InveterateClient() as client:
        assert client.base_url == sandbox.base_url
        await client.get_credits_page("1")
    monkeypatch.delenv("INVETERATE_API_KEY")
    with pytest.raises(ValueError, match="INVETERATE_API_KEY"):
        InveterateClient()
    monkeypatch.delenv("INVETERATE_BASE_URL")
    assert InveterateClient("k").base_url == "https://public.inveterateapi.com/v2.0"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"timeout": 0},
        {"timeout": "5"},
        {"max_retries": -1},
        {"max_retries": True},
        {"backoff_base": -1},
    ],
)
def test_bad_client_settings(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        InveterateClient("k", **kwargs)


@pytest.mark.parametrize("borrowed", [False, True])
async def test_every_request_carries_the_api_headers(sandbox: Sandbox, borrowed: bool) -> None:
    async with aiohttp.ClientSession(headers={"X-Team": "finance"}) as session:
        async with api(sandbox, session=session if borrowed else None) as client:
            await client.get_credits_page("1")
            await client.create_credit("1", "2.00")
        assert not session.closed
    for request in sandbox.requests:
        assert request.headers["X-Inveterate-Api-Key"] == API_KEY
        assert request.headers["Accept"] == "application/json"
        assert request.headers["User-Agent"] == f"inveterate-async/{__version__}"
        assert ("X-Team" in request.headers) is borrowed
    assert "Content-Type" not in sandbox.requests[0].headers
    assert sandbox.requests[1].headers["Content-Type"] == "application/json"
