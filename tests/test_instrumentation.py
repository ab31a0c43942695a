"""Tracing SDK calls: aiohttp TraceConfig on a borrowed session, and OpenTelemetry's
aiohttp-client instrumentation (spans read from the SDK's in-memory exporter). The API key
must never reach a span."""

from __future__ import annotations

import types
from collections.abc import Iterator
from decimal import Decimal

import aiohttp
import pytest
from opentelemetry.instrumentation.aiohttp_client import (
    AioHttpClientInstrumentor,
    create_trace_config,
)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from inveterate_async import InveterateClient
from inveterate_async.testing import Sandbox

from .conftest import API_KEY


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def assert_no_key(spans: tuple[ReadableSpan, ...]) -> None:
    for span in spans:
        assert API_KEY not in span.to_json()
        for value in (span.attributes or {}).values():
            assert API_KEY not in str(value)


async def test_a_trace_config_on_a_borrowed_session_sees_every_attempt(sandbox: Sandbox) -> None:
    seen: list[tuple[str, str, int | None]] = []

    async def on_end(
        session: aiohttp.ClientSession,
        context: types.SimpleNamespace,
        params: aiohttp.TraceRequestEndParams,
    ) -> None:
        seen.append((params.method, params.url.path, params.response.status))

    trace = aiohttp.TraceConfig()
    trace.on_request_end.append(on_end)
    sandbox.add_credits("42", ["1.00", "2.00", "3.00"])
    sandbox.fail_next(503, method="GET")
    async with (
        aiohttp.ClientSession(trace_configs=[trace]) as session,
        InveterateClient(API_KEY, base_url=sandbox.base_url, session=session, backoff_base=0) as c,
    ):
        amounts = [credit.amount async for credit in c.iter_credits("42", page_size=2)]
        await c.create_credit("42", "4.00")
    assert amounts == [Decimal("1.00"), Decimal("2.00"), Decimal("3.00")]
    path = "/v2.0/admin/members/42/credits"
    assert seen == [("GET", path, 503), ("GET", path, 200), ("GET", path, 200), ("POST", path, 201)]


async def test_opentelemetry_traces_sdk_calls_on_a_borrowed_session(
    sandbox: Sandbox, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    sandbox.add_credits("42", ["10.10"])
    trace = create_trace_config(tracer_provider=provider)
    async with (
        aiohttp.ClientSession(trace_configs=[trace]) as session,
        InveterateClient(API_KEY, base_url=sandbox.base_url, session=session) as client,
    ):
        await client.get_credits_page("42")
        await client.create_credit("42", "1.00")
    spans = exporter.get_finished_spans()
    assert [span.name for span in spans] == ["GET", "POST"]
    for span in spans:
        attributes = dict(span.attributes or {})
        assert attributes["http.url"].startswith(sandbox.base_url)  # type: ignore[union-attr]
        assert attributes["http.status_code"] in (200, 201)
    assert_no_key(spans)
    # The trace context reaches the API, beside (never instead of) the key.
    for request, span in zip(sandbox.requests, spans, strict=True):
        assert span.context is not None
        assert f"{span.context.trace_id:032x}" in request.headers["traceparent"]
        assert request.headers["X-Inveterate-Api-Key"] == API_KEY


async def test_captured_request_headers_need_the_key_header_marked_sensitive(
    sandbox: Sandbox, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    trace = create_trace_config(
        tracer_provider=provider,
        captured_request_headers=[".*"],
        sensitive_headers=["x-inveterate-api-key"],
    )
    async with (
        aiohttp.ClientSession(trace_configs=[trace]) as session,
        InveterateClient(API_KEY, base_url=sandbox.base_url, session=session) as client,
    ):
        await client.get_credits_page("42")
    (span,) = exporter.get_finished_spans()
    attributes = dict(span.attributes or {})
    assert attributes["http.request.header.x_inveterate_api_key"] == ("[REDACTED]",)
    assert "http.request.header.user_agent" in attributes
    assert_no_key((span,))


@pytest.fixture
def instrumented(provider: TracerProvider) -> Iterator[None]:
    instrumentor = AioHttpClientInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        yield
    finally:
        instrumentor.uninstrument()


@pytest.mark.usefixtures("instrumented")
async def test_the_global_instrumentor_traces_the_clients_own_session(
    sandbox: Sandbox, exporter: InMemorySpanExporter
) -> None:
    sandbox.add_credits("42", ["1.00", "2.00", "3.00"])
    async with InveterateClient(API_KEY, base_url=sandbox.base_url) as client:
        pages = [page async for page in client.iter_credit_pages("42", page_size=2)]
    assert len(pages) == 2
    spans = exporter.get_finished_spans()
    assert [span.name for span in spans] == ["GET", "GET"]
    assert [dict(span.attributes or {})["http.status_code"] for span in spans] == [200, 200]
    assert_no_key(spans)
