"""`shared/tracing.py`: off (nothing made, nothing added) unless an endpoint is set, and the
trace id in the log lines of a span."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import INVALID_SPAN

from shared import tracing
from shared.http_client import create_http_client
from shared.logging import correlation_id_var, setup_logging
from shared.settings import Settings
from tests.spans import in_memory_spans


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    with in_memory_spans() as exporter:
        yield exporter


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    """The service log setup, its handler writing to a buffer instead of stdout."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    setup_logging("test", "INFO", "json")
    buffer = io.StringIO()
    handler = root.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(buffer)
    try:
        yield buffer
    finally:
        root.handlers[:], root.level = handlers, level


def _lines(buffer: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line]


def test_log_lines_carry_the_trace_id_inside_a_span(
    exporter: InMemorySpanExporter,
    json_logs: io.StringIO,
) -> None:
    logger = logging.getLogger("tests.tracing")
    token = correlation_id_var.set("corr-1")
    try:
        logger.info("before")
        with tracing.span("work") as current:
            logger.info("inside")
        logger.info("after")
    finally:
        correlation_id_var.reset(token)
    before, inside, after = _lines(json_logs)
    assert inside["trace_id"] == format(current.get_span_context().trace_id, "032x")
    assert "trace_id" not in before and "trace_id" not in after
    assert before["correlation_id"] == inside["correlation_id"] == after["correlation_id"]
    assert inside["correlation_id"] == "corr-1"
    assert [s.name for s in exporter.get_finished_spans()] == ["work"]


def test_without_an_endpoint_tracing_stays_off_and_adds_nothing() -> None:
    tracing.setup_tracing("test", Settings(otel_exporter_otlp_endpoint=""))
    assert not tracing.enabled()
    with tracing.publish_span("notifications.direct", "email", "id-1") as headers:
        assert headers == {}
    assert tracing.consume_span("email.queue", {"traceparent": "x"}, {}) is INVALID_SPAN
    with tracing.span("nothing") as current:
        assert not current.is_recording()
        assert tracing.current_trace_id() is None
    assert tracing.aiohttp_trace_configs() == []
    client = create_http_client(Settings())
    assert not isinstance(client._transport, tracing.TracedTransport)


def test_an_endpoint_installs_an_exporting_provider() -> None:
    try:
        tracing.setup_tracing("test", Settings(otel_exporter_otlp_endpoint="http://127.0.0.1:4318"))
        assert tracing.enabled()
        assert isinstance(tracing._State.provider, TracerProvider)
        assert len(tracing.aiohttp_trace_configs()) == 1
        # (No span is made here: its export would go to a collector that is not there.)
    finally:
        provider = tracing._State.provider
        tracing.use_tracer_provider(None)
        if provider is not None:
            provider.shutdown()


def test_a_consumer_continues_the_trace_its_headers_carry(
    exporter: InMemorySpanExporter,
) -> None:
    with tracing.publish_span("notifications.direct", "email", "id-1") as headers:
        pass
    consumed = tracing.consume_span(
        "email.queue", {k: v.encode() for k, v in headers.items()}, {"notification.id": "id-1"}
    )
    consumed.end()
    publish, process = exporter.get_finished_spans()
    assert process.context.trace_id == publish.context.trace_id
    assert process.parent is not None and process.parent.span_id == publish.context.span_id
    assert process.name == "process email.queue"
