"""Failure paths of a real service: scrubbed typed errors, lent sessions, hostile bodies,
lifetimes and loops, limits that hold at any size. Every test runs against real servers
on 127.0.0.1."""

from __future__ import annotations

import asyncio
import gc
import logging
import pickle
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from multidict import CIMultiDict, CIMultiDictProxy

from inveterate_async import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    CreditResult,
    InvalidResponseError,
    InveterateClient,
    InveterateError,
    MemberError,
    NotFoundError,
    PaginationError,
    RateLimitError,
    ServerError,
)
from inveterate_async._pagination import CycleGuard
from inveterate_async._streaming.fanout import _RUNNING
from inveterate_async.testing import Sandbox

KEY = "sk_live_hard/ening+KEY"
ENCODED_KEY = quote(KEY, safe="")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    """Start a real server on 127.0.0.1 answering with ``handler``; returns its base URL."""
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


def page(credits: list[Any], cursor: Any = None) -> dict[str, Any]:
    return {"message": "ok", "data": {"credits": credits, "lastCreditEntry": cursor}}


def texts_of(error: BaseException) -> list[str]:
    """Everything a user, a log or a traceback could show of an error and its causes."""
    shown = [str(error), repr(error)]
    for value in vars(error).values():
        shown.append(repr(value))
        if isinstance(value, bytes):
            shown.append(value.decode("utf-8", "replace"))
    for name in ("request_id",):
        shown.append(repr(getattr(error, name, None)))
    cause = error.__cause__ or error.__context__
    if cause is not None:
        shown.extend(texts_of(cause) if isinstance(cause, InveterateError) else [str(cause)])
        shown.append(repr(cause))
    return shown


def assert_no_key(*texts: str) -> None:
    for text in texts:
        assert KEY not in text
        assert ENCODED_KEY not in text


# 1. The key never leaks, whatever failure path the server takes.


async def test_key_echoed_into_every_failure_path_is_scrubbed(
    serve: Callable[[Handler], Awaitable[str]], caplog: pytest.LogCaptureFixture
) -> None:
    async def echo(request: web.Request) -> web.StreamResponse:
        key = request.headers["X-Inveterate-Api-Key"]
        path = request.match_info["tail"]
        cursor = request.query.get("lastCreditEntry")
        if "status" in path:
            return web.json_response(
                {"message": f"bad key {key}", "data": {key: [key]}},
                status=400,
                headers={"X-Echo": key, "X-Request-Id": key},
            )
        if "notjson" in path:
            return web.Response(status=200, text=f"<p>hello {key}</p>")
        if "entry" in path:
            return web.json_response(page([{"id": key, "amount": "x" + key}]))
        if "shape" in path:
            return web.json_response({"message": key, "data": key})
        if "badcursor" in path:
            if cursor is None:
                return web.json_response(page([], {"k": key}))
            return web.json_response({"message": f"Invalid lastCreditEntry {cursor}"}, status=400)
        if "loop" in path:
            return web.json_response(page([], key))
        # A status line no HTTP parser accepts, with the key in it.
        assert request.transport is not None
        request.transport.write(f"HTTP/1.1 2x0 {key}\r\n\r\n".encode())
        request.transport.close()
        return web.Response()

    base_url = await serve(echo)
    caplog.set_level(logging.DEBUG)
    errors: list[InveterateError] = []
    async with InveterateClient(KEY, base_url=base_url, backoff_base=0, max_retries=1) as client:
        for member in ("status", "notjson", "entry", "shape", "badcursor", "loop", "conn"):
            with pytest.raises(InveterateError) as info:
                async for _ in client.iter_credit_pages(f"{member}-{KEY}"):
                    pass
            errors.append(info.value)
        with pytest.raises(InveterateError) as info:
            await client.create_credit(f"notjson-{KEY}", Decimal("1"))
        errors.append(info.value)

    kinds = [type(error) for error in errors]
    assert kinds == [
        BadRequestError,
        InvalidResponseError,
        InvalidResponseError,
        InvalidResponseError,
        BadRequestError,
        PaginationError,
        APIConnectionError,
        InvalidResponseError,
    ]
    for error in errors:
        assert_no_key(*texts_of(error))
        assert "[redacted]" in str(error)
    status = errors[0]
    assert isinstance(status, APIStatusError)
    assert status.headers["x-echo"] == "[redacted]"
    assert status.request_id == "[redacted]"
    assert status.data == {"[redacted]": ["[redacted]"]}
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("inveterate_async")]
    assert len(ours) >= len(errors), "the debug log was recorded"
    assert_no_key(*ours)


# 2. A lent session's settings cannot bend the SDK.


async def test_lent_session_settings_cannot_change_the_error_model() -> None:
    async with Sandbox(api_key=KEY, latency=0.05) as sandbox:
        sandbox.add_credits("1", ["5.00"])
        lent = aiohttp.ClientSession(
            raise_for_status=True,
            headers={"X-Inveterate-Api-Key": "wrong", "Accept": "text/html"},
            timeout=aiohttp.ClientTimeout(total=0.001),
            auto_decompress=False,
        )
        async with (
            lent,
            InveterateClient(
                KEY, base_url=sandbox.base_url, session=lent, backoff_base=0
            ) as client,
        ):
            assert [c.amount async for c in client.iter_credits("1")] == [Decimal("5.00")]
            sandbox.reset_stats()
            with pytest.raises(BadRequestError):
                await client.get_credits_page("1", cursor="not-issued")
            assert len(sandbox.requests) == 1, "a GET 400 is not retried"
            sandbox.fail_next(400, method="POST")
            with pytest.raises(BadRequestError) as info:
                await client.create_credit("1", "1.00")
            assert not hasattr(info.value, "outcome_unknown")
            sandbox.fail_next(404)
            with pytest.raises(NotFoundError):
                await client.get_credits_page("1")
            sandbox.fail_next(401)
            with pytest.raises(AuthenticationError):
                await client.get_credits_page("1")
        received = sandbox.requests[-1].headers
        assert received["X-Inveterate-Api-Key"] == KEY
        assert received["Accept"] == "application/json"
        assert received["Accept-Encoding"] == "identity"


async def test_lent_session_never_follows_redirects(
    serve: Callable[[Handler], Awaitable[str]],
) -> None:
    seen: list[str] = []

    async def redirect(request: web.Request) -> web.StreamResponse:
        seen.append(request.path)
        return web.Response(status=302, headers={"Location": "/elsewhere"})

    base_url = await serve(redirect)
    async with (
        aiohttp.ClientSession() as lent,
        InveterateClient(KEY, base_url=base_url, session=lent) as client,
    ):
        with pytest.raises(APIStatusError) as info:
            await client.get_credits_page("1")
    assert info.value.status == 302
    assert seen == ["/v2.0/admin/members/1/credits"]


# 3. Bodies no parser should choke on, and the size cap.

DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize(
    ("status", "expected"), [(200, InvalidResponseError), (201, InvalidResponseError)]
)
async def test_deeply_nested_success_is_an_invalid_response(
    serve: Callable[[Handler], Awaitable[str]], status: int, expected: type[Exception]
) -> None:
    async def deep(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, body=DEEP, content_type="application/json")

    async with InveterateClient(KEY, base_url=await serve(deep)) as client:
        with pytest.raises(expected):
            await client.get_credits_page("1")
        with pytest.raises(expected) as info:
            await client.create_credit("1", "1")
        assert info.value.outcome_unknown is True  # type: ignore[attr-defined]


async def test_deeply_nested_error_body_is_the_status_error(
    serve: Callable[[Handler], Awaitable[str]],
) -> None:
    async def deep(request: web.Request) -> web.StreamResponse:
        return web.Response(status=500, body=DEEP, content_type="application/json")

    async with InveterateClient(KEY, base_url=await serve(deep), max_retries=0) as client:
        with pytest.raises(ServerError) as info:
            await client.create_credit("1", "1")
    assert info.value.outcome_unknown is True
    assert "HTTP 500" in str(info.value)


@pytest.mark.parametrize("chunked", [False, True])
async def test_bodies_past_the_cap_are_typed_errors(
    serve: Callable[[Handler], Awaitable[str]], chunked: bool
) -> None:
    big = b'{"message":"' + b"x" * 5000 + b'","data":{"credits":[]}}'

    async def large(request: web.Request) -> web.StreamResponse:
        status = 500 if "fail" in request.path else 200
        if not chunked:
            return web.Response(status=status, body=big, content_type="application/json")
        response = web.StreamResponse(status=status)
        response.enable_chunked_encoding()
        await response.prepare(request)
        for start in range(0, len(big), 1000):
            await response.write(big[start : start + 1000])
        await response.write_eof()
        return response

    base_url = await serve(large)
    async with InveterateClient(
        KEY, base_url=base_url, max_response_bytes=1000, max_retries=0
    ) as client:
        with pytest.raises(InvalidResponseError, match="max_response_bytes"):
            await client.get_credits_page("1")
        with pytest.raises(InvalidResponseError) as info:
            await client.create_credit("1", "1")
        assert info.value.outcome_unknown is True
        with pytest.raises(ServerError) as failed:
            await client.get_credits_page("fail")
        assert len(failed.value.body) <= 1000
    async with InveterateClient(KEY, base_url=base_url, max_response_bytes=10_000) as client:
        assert (await client.get_credits_page("1")).credits == ()


# 4. Error texts a person and a log can use.


async def test_str_is_one_line_and_message_stays_exact(
    serve: Callable[[Handler], Awaitable[str]],
) -> None:
    async def multiline(request: web.Request) -> web.StreamResponse:
        return web.json_response({"message": "first\nsecond\r\nthird", "data": {}}, status=400)

    async with InveterateClient(KEY, base_url=await serve(multiline)) as client:
        with pytest.raises(BadRequestError) as info:
            await client.get_credits_page("1")
    error = info.value
    assert error.message == "first\nsecond\r\nthird"
    assert "\n" not in str(error)
    assert "\r" not in str(error)
    assert "first\\nsecond\\r\\nthird" in str(error)


async def test_html_page_gives_its_visible_text_only(
    serve: Callable[[Handler], Awaitable[str]],
) -> None:
    html = (
        "<!DOCTYPE html><html><head><title>502 Bad Gateway</title>"
        "<style>body { color: red; }</style><script>var secret = 1;</script></head>"
        "<body><!-- edge node 7 --><h1>Bad&nbsp;gateway</h1><p>The origin is down.</p>"
        + "<p>padding words</p>" * 200
        + "</body></html>"
    )

    async def proxy(request: web.Request) -> web.StreamResponse:
        return web.Response(status=502, text=html, content_type="text/html")

    async with InveterateClient(KEY, base_url=await serve(proxy), max_retries=0) as client:
        with pytest.raises(ServerError) as info:
            await client.get_credits_page("1")
    message = info.value.message
    assert message.startswith("HTTP 502 Bad Gateway: 502 Bad Gateway Bad gateway The origin")
    for hidden in ("color", "secret", "edge node", "<", ">"):
        assert hidden not in message
    assert len(message) < 400
    assert message.endswith("…")


# 5. Error attributes: headers, request ids, pickling.


@pytest.mark.parametrize(
    ("headers", "request_id"),
    [
        ({"X-Request-Id": "req-1", "cf-ray": "ray-1"}, "req-1"),
        ({"x-amzn-RequestId": "amz-1"}, "amz-1"),
        ({"CF-Ray": "ray-2"}, "ray-2"),
        ({}, None),
    ],
)
async def test_headers_are_a_case_insensitive_multidict_with_the_request_id(
    serve: Callable[[Handler], Awaitable[str]], headers: dict[str, str], request_id: str | None
) -> None:
    async def answer(request: web.Request) -> web.StreamResponse:
        response = web.json_response({"message": "no"}, status=404, headers=headers)
        response.headers.add("Set-Thing", "a")
        response.headers.add("Set-Thing", "b")
        return response

    async with InveterateClient(KEY, base_url=await serve(answer)) as client:
        with pytest.raises(NotFoundError) as info:
            await client.get_credits_page("1")
    error = info.value
    assert isinstance(error.headers, CIMultiDictProxy)
    assert error.headers.getall("set-thing") == ["a", "b"]
    assert error.request_id == request_id


def _all_errors() -> list[InveterateError]:
    headers = CIMultiDict([("X-Request-Id", "r1"), ("Set-Thing", "a"), ("Set-Thing", "b")])
    args = (
        "HTTP message\nline two",
        {"field": [Decimal("1.10")]},
        "POST",
        "https://x/v2.0/admin/members/1/credits",
        headers,
        b"raw body",
    )
    status = [cls(code, *args) for code, cls in ((400, BadRequestError), (404, NotFoundError))]
    cause = ServerError(500, *args, outcome_unknown=True)
    member = MemberError("42", cause, "cursor-7")
    member.__cause__ = cause
    return [
        *status,
        RateLimitError(429, *args, retry_after=2.5),
        cause,
        APIConnectionError("refused", method="GET", url="u", outcome_unknown=False),
        APITimeoutError("timed out", method="POST", url="u", outcome_unknown=True),
        InvalidResponseError(
            "not JSON",
            method="POST",
            url="u",
            body=b"x",
            status=201,
            headers=headers,
            outcome_unknown=True,
        ),
        PaginationError("loop"),
        member,
        InveterateError("plain"),
    ]


@pytest.mark.parametrize("error", _all_errors(), ids=lambda e: type(e).__name__)
def test_every_error_pickles_with_its_type_attributes_and_text(error: InveterateError) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert repr(copy) == repr(error)
    for name, value in vars(error).items():
        if isinstance(value, InveterateError):
            assert repr(getattr(copy, name)) == repr(value)
        elif name == "headers":
            copied = getattr(copy, name)
            assert list(copied.items()) == list(value.items())
            assert isinstance(copied, CIMultiDictProxy)
        else:
            assert getattr(copy, name) == value, name
    if isinstance(error, MemberError):
        assert isinstance(copy.__cause__, ServerError)
        assert copy.__cause__.outcome_unknown is True


# 6 and 7. A write whose answer cannot be read is of unknown outcome; an empty 2xx is a success.


@pytest.mark.parametrize(
    "body",
    [b'{"message": "Credit cre', b"<html>ok</html>", b'["not", "an", "object"]'],
    ids=["truncated", "not-json", "wrong-shape"],
)
async def test_unreadable_answer_to_a_write_is_of_unknown_outcome(
    serve: Callable[[Handler], Awaitable[str]], body: bytes
) -> None:
    posts: list[bytes] = []

    async def applied(request: web.Request) -> web.StreamResponse:
        if request.method == "POST":
            posts.append(await request.read())
        return web.Response(status=201 if request.method == "POST" else 200, body=body)

    async with InveterateClient(KEY, base_url=await serve(applied)) as client:
        with pytest.raises(InvalidResponseError) as write:
            await client.create_credit("1", "5.00")
        with pytest.raises(InvalidResponseError) as read:
            await client.get_credits_page("1")
    assert write.value.outcome_unknown is True
    assert "check the ledger" in str(write.value)
    assert write.value.status == 201
    assert len(posts) == 1, "never sent twice"
    assert read.value.outcome_unknown is False


@pytest.mark.parametrize("status", [204, 200, 201])
async def test_empty_success_to_a_write_is_an_applied_credit(
    serve: Callable[[Handler], Awaitable[str]], status: int
) -> None:
    async def empty(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status)

    async with InveterateClient(KEY, base_url=await serve(empty)) as client:
        assert await client.create_credit("1", "5.00") == CreditResult("", None)
        with pytest.raises(InvalidResponseError):
            await client.get_credits_page("1")


# 8. Closing while a request is in flight.


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_aclose_during_a_request_ends_it_with_a_typed_error(
    serve: Callable[[Handler], Awaitable[str]], method: str
) -> None:
    arrived = asyncio.Event()
    hits: list[str] = []

    async def hang(request: web.Request) -> web.StreamResponse:
        hits.append(request.method)
        arrived.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    client = InveterateClient(KEY, base_url=await serve(hang), backoff_base=0, max_retries=5)
    call = client.get_credits_page("1") if method == "GET" else client.create_credit("1", "1")
    task = asyncio.ensure_future(call)
    await asyncio.wait_for(arrived.wait(), 10)
    await client.aclose()
    with pytest.raises(APIConnectionError, match="closed") as info:
        await asyncio.wait_for(task, 10)
    assert hits == [method], "never retried on a closed client"
    assert info.value.outcome_unknown is (method == "POST")
    with pytest.raises(RuntimeError, match="closed"):
        await client.get_credits_page("1")


# 9. One client, one loop.


def test_a_client_used_from_a_second_loop_says_how_to_fix_it() -> None:
    clients: list[InveterateClient] = []

    async def first() -> None:
        async with Sandbox(api_key=KEY) as sandbox:
            client = InveterateClient(KEY, base_url=sandbox.base_url)
            clients.append(client)
            await client.get_credits_page("1")
            await client.aclose()

    async def second() -> None:
        await clients[0].get_credits_page("1")

    asyncio.run(first())
    with pytest.raises(RuntimeError, match="one client per event loop"):
        asyncio.run(second())


# 10. A dropped fan-out stream cancels its workers cleanly.


@pytest.mark.parametrize("cycle", [False, True], ids=["dropped", "dropped-in-a-cycle"])
async def test_dropped_stream_cancels_its_workers_without_pending_task_warnings(
    cycle: bool,
) -> None:
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: reported.append(context))
    try:
        async with Sandbox(api_key=KEY) as sandbox:
            sandbox.seed_members(40, credits_per_member=30)
            async with InveterateClient(KEY, base_url=sandbox.base_url) as client:
                stream = client.iter_credits_many(map(str, range(1, 41)), concurrency=4)
                iterator = stream.__aiter__()
                await iterator.__anext__()
                assert _RUNNING, "workers are running"
                if cycle:
                    holder: dict[str, Any] = {"stream": stream}
                    holder["self"] = holder
                del stream, iterator
                if cycle:
                    del holder
                gc.collect()
                for _ in range(1000):
                    if not _RUNNING:
                        break
                    await asyncio.sleep(0.01)
                gc.collect()
                assert not _RUNNING, "every worker ended"
                assert (await client.get_credits_page("1")).credits
    finally:
        loop.set_exception_handler(None)
    assert reported == []


# 11. An empty base URL is an error, not a fallback.


def test_empty_base_url_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INVETERATE_BASE_URL", "http://127.0.0.1:1/v2.0")
    with pytest.raises(ValueError, match="base_url"):
        InveterateClient(KEY, base_url="")


# 12. Cycle detection in constant memory.


def test_cycle_guard_uses_constant_memory_on_a_long_ledger() -> None:
    guard = CycleGuard()
    tracemalloc.start()
    try:
        for n in range(1_000):
            assert not guard.repeated(f"cursor-{n:0100d}")
        baseline = tracemalloc.get_traced_memory()[0]
        for n in range(1_000, 200_000):
            assert not guard.repeated(f"cursor-{n:0100d}")
        grown = tracemalloc.get_traced_memory()[0] - baseline
    finally:
        tracemalloc.stop()
    assert grown < 200_000, f"the guard grew by {grown} bytes over 199,000 cursors"


@pytest.mark.parametrize(("start", "length"), [(0, 1), (5, 3), (50_000, 7), (30_000, 20_000)])
def test_cycle_guard_catches_loops_that_start_late(start: int, length: int) -> None:
    guard = CycleGuard()

    def cursor(step: int) -> str:
        return str(step if step < start else start + (step - start) % length)

    steps = next(step for step in range(10 * (start + length) + 10) if guard.repeated(cursor(step)))
    assert steps >= start + length, "no false alarm before the loop closes"
    if length <= 1024:
        assert steps == start + length, "a short loop is caught at its first repeat"
    assert steps <= 2 * (start + length) + length


async def test_a_late_long_cursor_loop_raises_pagination_error(
    serve: Callable[[Handler], Awaitable[str]],
) -> None:
    requests = 0

    async def looping(request: web.Request) -> web.StreamResponse:
        nonlocal requests
        requests += 1
        n = int(request.query.get("lastCreditEntry", "-1")) + 1
        nxt = 3000 if n == 5000 else n
        return web.json_response(page([{"id": str(n), "amount": 1}], str(nxt)))

    async with InveterateClient(KEY, base_url=await serve(looping)) as client:
        with pytest.raises(PaginationError, match="again"):
            async for _ in client.iter_credit_pages("1"):
                pass
    assert 5000 < requests <= 2 * 5000 + 2000


# 13. A total time budget across retries.


async def test_deadline_bounds_a_call_however_many_retries_remain(
    serve: Callable[[Handler], Awaitable[str]],
) -> None:
    attempts = 0

    async def busy(request: web.Request) -> web.StreamResponse:
        nonlocal attempts
        attempts += 1
        return web.json_response({"message": "busy"}, status=503)

    async with InveterateClient(
        KEY, base_url=await serve(busy), max_retries=10_000, backoff_base=0.02, deadline=0.3
    ) as client:
        with pytest.raises(APITimeoutError, match=r"deadline of 0\.3 s reached after") as info:
            await client.get_credits_page("1")
    assert info.value.outcome_unknown is False
    assert 1 <= attempts < 10_000


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_per_call_deadline_cuts_a_hanging_request(
    serve: Callable[[Handler], Awaitable[str]], method: str
) -> None:
    async def hang(request: web.Request) -> web.StreamResponse:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async with InveterateClient(KEY, base_url=await serve(hang), timeout=3600) as client:
        call = (
            client.get_credits_page("1", deadline=0.2)
            if method == "GET"
            else client.create_credit("1", "1", deadline=0.2)
        )
        with pytest.raises(APITimeoutError, match=r"deadline of 0\.2 s reached") as info:
            await call
    assert info.value.outcome_unknown is (method == "POST")
    with pytest.raises(ValueError, match="deadline"):
        InveterateClient(KEY, base_url="http://127.0.0.1:1/v2.0", deadline=0)


# 14. Money in, exactly.


async def test_float_amounts_are_refused_before_anything_is_sent(sandbox: Sandbox) -> None:
    async with InveterateClient(sandbox.api_key, base_url=sandbox.base_url) as client:
        with pytest.raises(ValueError, match="Decimal"):
            await client.create_credit("1", 0.1 + 0.2)  # type: ignore[arg-type]
    assert sandbox.requests == []


def test_a_cursor_that_holds_the_key_never_shows_in_a_repr() -> None:
    from inveterate_async import CreditPage, LedgerPosition, MemberError, MemberFailure

    key = "sk_live_0123456789abcdef-SECRET"
    cursor = f'{{"pk":"member#1","echo":"{key}"}}'
    error = MemberError("42", ValueError("boom"), cursor)
    position = LedgerPosition.after(cursor)
    shown = [
        error,
        MemberFailure("42", ValueError("boom"), cursor),
        position,
        CreditPage((), cursor),
    ]
    for value in shown:
        assert key not in repr(value), repr(value)
        assert f"<{len(cursor)} chars" in repr(value)
    assert error.cursor == cursor  # the attribute still resumes
    assert position.cursor == cursor
    assert "cursor='abc'" in repr(LedgerPosition.after("abc"))  # a short one is shown
