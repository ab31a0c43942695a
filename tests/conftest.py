"""Shared fixtures: a running Sandbox and a client pointed at it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestServer

from inveterate_async import InveterateClient
from inveterate_async.testing import Sandbox

API_KEY = "sk_test_4f9a-SECRET"


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox(api_key=API_KEY) as server:
        yield server


@pytest.fixture
async def client(sandbox: Sandbox) -> AsyncIterator[InveterateClient]:
    async with InveterateClient(API_KEY, base_url=sandbox.base_url, backoff_base=0) as api:
        yield api


async def assert_no_connection_held(client: InveterateClient, customer_id: str = "1") -> None:
    """Make one more request through ``client`` and wait for it, at most 10 s.

    Lend the client a session whose connector has ``limit=1``: a connection that leaked
    keeps the only slot, so this request would wait for the pool forever.
    """
    try:
        await asyncio.wait_for(client.get_credits_page(customer_id), timeout=10)
    except asyncio.TimeoutError:
        raise AssertionError(
            "a request waited 10 s for the connection pool: a connection was never released"
        ) from None


class _CompatClientResponse(ClientResponse):
    """aioresponses 0.7.9 builds ClientResponse without ``stream_writer``, which
    aiohttp 3.14 requires (pnuckowski/aioresponses#289, fix in PR #288). Supply a
    stand-in so request-shape tests run on current aiohttp without pinning it down."""

    class _NoWriter:
        output_size = 0

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("stream_writer", self._NoWriter())
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def mocked_api() -> Iterator[object]:
    """aioresponses, patched for aiohttp 3.14 (see _CompatClientResponse)."""
    from aioresponses import aioresponses, core

    original = core.ClientResponse  # type: ignore[attr-defined]
    core.ClientResponse = _CompatClientResponse  # type: ignore[attr-defined]
    try:
        with aioresponses() as mocked:
            yield mocked
    finally:
        core.ClientResponse = original  # type: ignore[attr-defined]


class ScriptedServer:
    """A bare aiohttp server on 127.0.0.1 that answers from a script, for shapes
    and faults the Sandbox does not produce (redirects, proxies' HTML pages...)."""

    def __init__(self) -> None:
        self.script: list[web.StreamResponse] = []
        self.requests: list[web.BaseRequest] = []
        self.server = TestServer(self._app(), host="127.0.0.1")

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(request)
        if not self.script:
            return web.json_response({"message": "script exhausted", "data": {}}, status=500)
        return self.script.pop(0)

    def answer(self, status: int = 200, body: object = None, **headers: str) -> None:
        """Queue one response: a dict/list body is sent as JSON, bytes as they are."""
        if isinstance(body, bytes):
            self.script.append(web.Response(status=status, body=body, headers=headers))
        else:
            self.script.append(web.json_response(body, status=status, headers=headers))

    @property
    def base_url(self) -> str:
        return str(self.server.make_url("/v2.0"))


@pytest.fixture
async def scripted() -> AsyncIterator[ScriptedServer]:
    server = ScriptedServer()
    await server.server.start_server()
    try:
        yield server
    finally:
        await server.server.close()
