"""One notification, one trace: the gateway's request, its publish, the worker's processing,
its status writes and the SMTP send, against real PostgreSQL, RabbitMQ and the SMTP inbox.

The gateway and the email worker run in this process on the gateway tests' vhost, with an
in-memory span exporter installed as the process's tracer provider (what `setup_tracing` does
with an OTLP exporter when `OTEL_EXPORTER_OTLP_ENDPOINT` is set).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import aio_pika
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from devtools.smtp_inbox import SmtpInbox
from devtools.stack import free_port
from services.api_gateway.settings import GatewaySettings
from services.email_service.app import create_app as create_email_app
from shared.messaging.message import Channel
from shared.messaging.topology import declare_topology
from shared.settings import Settings
from tests.conftest import wait_for
from tests.integration.api_gateway.conftest import running_gateway, send_body
from tests.integration.api_gateway.upstream import Upstream
from tests.integration.email_service.conftest import Templates
from tests.spans import in_memory_spans


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    with in_memory_spans() as exporter:
        yield exporter


@asynccontextmanager
async def running_email_worker(settings: Settings) -> AsyncIterator[SmtpInbox]:
    async with SmtpInbox(port=settings.smtp_port) as inbox:
        app = create_email_app(settings, templates=Templates())
        async with app.router.lifespan_context(app):
            yield inbox


async def _purge_email_queue(settings: Settings) -> None:
    """Earlier gateway tests leave their messages in `email.queue` (they read a tap)."""
    connection = await aio_pika.connect(settings.rabbitmq_url)
    try:
        channel = await connection.channel()
        topology = await declare_topology(channel, settings.retry_delay_levels_ms)
        await topology.work_queues[Channel.EMAIL].purge()
    finally:
        await connection.close()


def _one(spans: Sequence[ReadableSpan], name: str, **attributes: Any) -> ReadableSpan:
    found = [
        s
        for s in spans
        if s.name == name and all((s.attributes or {}).get(k) == v for k, v in attributes.items())
    ]
    assert len(found) == 1, (name, [s.name for s in spans])
    return found[0]


def _parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


async def test_one_notification_is_one_trace_from_the_request_to_the_smtp_send(
    exporter: InMemorySpanExporter,
    gw_settings: Callable[..., GatewaySettings],
    base_settings: Settings,
    upstream: Upstream,
) -> None:
    upstream.add_template("welcome", "email")
    user_id = upstream.add_user()
    settings = gw_settings()
    worker_settings = base_settings.model_copy(
        update={
            "rabbitmq_url": settings.rabbitmq_url,
            "smtp_port": free_port(),
            "delivery_policy_check": False,
        }
    )
    await _purge_email_queue(settings)
    async with (
        running_gateway(settings) as gw,
        running_email_worker(worker_settings) as inbox,
    ):
        response = await gw.client.post(
            "/v1/notifications/send",
            json=send_body(user_id),
            headers={**gw.headers, "X-Correlation-ID": "corr-traced"},
        )
        assert response.status_code == 202, response.text
        notification_id = response.json()["data"]["notification_id"]

        async def processed() -> list[ReadableSpan] | None:
            spans = exporter.get_finished_spans()
            done = any(
                s.name == "process email.queue"
                and (s.attributes or {}).get("notification.id") == notification_id
                for s in spans
            )
            return list(spans) if done else None

        spans = await wait_for(processed)
    assert [m.rcpt_tos for m in inbox.inbox.messages] == [["ada@example.com"]]

    server = _one(spans, "POST /v1/notifications/send")
    publish = _one(spans, "publish email", **{"messaging.message.id": notification_id})
    process = _one(spans, "process email.queue", **{"notification.id": notification_id})
    smtp = _one(spans, "smtp send", **{"notification.id": notification_id})
    claim = _one(spans, "notification_status.claim", **{"notification.id": notification_id})
    finish = _one(spans, "notification_status.finish", **{"notification.id": notification_id})
    chain = [server, publish, process, smtp, claim, finish]

    assert {s.context.trace_id for s in chain} == {server.context.trace_id}
    assert server.parent is None and server.kind is SpanKind.SERVER
    assert _parent_of(publish) == server.context.span_id and publish.kind is SpanKind.PRODUCER
    assert _parent_of(process) == publish.context.span_id and process.kind is SpanKind.CONSUMER
    assert _parent_of(smtp) == process.context.span_id
    assert _parent_of(claim) == process.context.span_id
    assert _parent_of(finish) == process.context.span_id
    assert (finish.attributes or {})["notification.status"] == "delivered"
    assert (process.attributes or {})["notification.outcome"] == "delivered"
    assert (process.attributes or {})["notification.correlation_id"] == "corr-traced"
    assert (server.attributes or {})["http.response.status_code"] == 202
    # The contact (aiohttp) and template (httpx) lookups are client spans of the request.
    # (Only this request's trace: a gateway also fans out broadcasts other tests left behind.)
    lookups = [
        s
        for s in spans
        if s.kind is SpanKind.CLIENT
        and s.name == "GET"
        and s.context.trace_id == server.context.trace_id
    ]
    assert [_parent_of(s) for s in lookups] == [server.context.span_id] * 2

    # No person in any span: not the address, not the user id (the contact path holds it).
    for span in spans:
        values = " ".join(str(v) for v in (span.attributes or {}).values())
        assert "ada@example.com" not in values and str(user_id) not in values, span.name
        assert str(user_id) not in span.name


async def test_a_caller_traceparent_is_continued(
    exporter: InMemorySpanExporter, gw: Any, upstream: Upstream
) -> None:
    trace_id = uuid.uuid4().hex
    parent = "b7ad6b7169203331"
    response = await gw.client.get(
        f"/v1/notifications/{uuid.uuid4()}/status",
        headers={**gw.headers, "traceparent": f"00-{trace_id}-{parent}-01"},
    )
    assert response.status_code == 404
    server = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert len(server) == 1
    assert format(server[0].context.trace_id, "032x") == trace_id
    assert _parent_of(server[0]) == int(parent, 16)
    assert server[0].name == "GET /v1/notifications/{ref}/status"
