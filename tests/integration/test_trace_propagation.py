"""Outgoing HTTP between the services carries the caller's trace: both client factories (the
aiohttp session of `shared.contacts` and `shared.http_client`'s httpx client) make a client
span whose `traceparent` the receiving service (any app of `create_service_app`) continues.
The receiver is served for real, over TCP, in a thread of this process."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from shared import tracing
from shared.contacts import create_user_session
from shared.http import create_service_app
from shared.http_client import create_http_client
from shared.settings import Settings
from tests.conftest import wait_for
from tests.servers import serve_in_thread
from tests.spans import in_memory_spans


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    with in_memory_spans() as exporter:
        yield exporter


@pytest.fixture
def receiver(base_settings: Settings, exporter: InMemorySpanExporter) -> Iterator[str]:
    app = create_service_app(service="receiver", title="receiver", settings=base_settings)

    @app.get("/internal/v1/users/{user_id}/echo")
    async def echo(user_id: str) -> dict[str, str | None]:
        return {"trace_id": tracing.current_trace_id()}

    with serve_in_thread(app, base_settings) as url:
        yield url


def _server_span(exporter: InMemorySpanExporter) -> Callable[[], Awaitable[ReadableSpan | None]]:
    async def check() -> ReadableSpan | None:
        found = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.SERVER]
        return found[0] if found else None

    return check


async def test_aiohttp_sessions_propagate_the_trace(
    base_settings: Settings, exporter: InMemorySpanExporter, receiver: str
) -> None:
    session = create_user_session(receiver, internal_key="k", timeout_seconds=5)
    try:
        with tracing.span("caller") as caller:
            async with session.get("/internal/v1/users/u-1/echo") as response:
                answer = await response.json()
    finally:
        await session.close()
    await _assert_continued(exporter, caller.get_span_context().trace_id, answer)


async def test_httpx_clients_propagate_the_trace(
    base_settings: Settings, exporter: InMemorySpanExporter, receiver: str
) -> None:
    client = create_http_client(base_settings, base_url=receiver)
    try:
        with tracing.span("caller") as caller:
            answer = (await client.get("/internal/v1/users/u-1/echo")).json()
    finally:
        await client.aclose()
    await _assert_continued(exporter, caller.get_span_context().trace_id, answer)


async def _assert_continued(
    exporter: InMemorySpanExporter, trace_id: int, answer: dict[str, str]
) -> None:
    assert answer["trace_id"] == format(trace_id, "032x")
    server = await wait_for(_server_span(exporter))
    spans = exporter.get_finished_spans()
    caller = next(s for s in spans if s.name == "caller")
    client = next(s for s in spans if s.kind is SpanKind.CLIENT)
    assert client.parent is not None and client.parent.span_id == caller.context.span_id
    assert server.parent is not None and server.parent.span_id == client.context.span_id
    assert server.name == "GET /internal/v1/users/{user_id}/echo"
    # The path (with the user id) is in no span.
    for span in spans:
        assert "u-1" not in span.name
        assert all("u-1" not in str(v) for v in (span.attributes or {}).values())
