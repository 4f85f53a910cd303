"""A retried email stays one trace: the failed attempt's `process` span publishes the retry to
a delay queue, and the next attempt's `process` span continues from that publish."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from tests.conftest import wait_for
from tests.integration.email_service.conftest import EmailWorker
from tests.spans import in_memory_spans


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    with in_memory_spans() as exporter:
        yield exporter


def _named(spans: list[ReadableSpan], prefix: str, notification_id: str) -> list[ReadableSpan]:
    """The spans whose name starts with `prefix` about one notification, oldest first."""

    def about(span: ReadableSpan) -> bool:
        attributes = span.attributes or {}
        return notification_id in (
            attributes.get("notification.id"),
            attributes.get("messaging.message.id"),
        )

    found = [s for s in spans if s.name.startswith(prefix) and about(s)]
    return sorted(found, key=lambda s: s.start_time or 0)


async def test_a_retry_continues_the_trace_of_the_first_attempt(
    exporter: InMemorySpanExporter, worker: EmailWorker
) -> None:
    await worker.inbox.set_fault("tempfail", 451)
    message = await worker.notify()
    nid = str(message.notification_id)
    await wait_for(worker.status_is(message.notification_id, "retrying"))
    await worker.inbox.set_fault("none")
    await wait_for(worker.status_is(message.notification_id, "delivered"))

    async def both_processed() -> list[ReadableSpan] | None:
        spans = list(exporter.get_finished_spans())
        return spans if len(_named(spans, "process email.queue", nid)) >= 2 else None

    spans = await wait_for(both_processed)
    first, second = _named(spans, "process email.queue", nid)[:2]
    publishes = _named(spans, "publish ", nid)
    retry = next(s for s in publishes if s.name.startswith("publish email.retry."))
    assert publishes[0].name == "publish email" and publishes[0].parent is None
    assert first.parent is not None and first.parent.span_id == publishes[0].context.span_id
    assert retry.parent is not None and retry.parent.span_id == first.context.span_id
    assert second.parent is not None and second.parent.span_id == retry.context.span_id
    assert {s.context.trace_id for s in (publishes[0], first, retry, second)} == {
        first.context.trace_id
    }
    assert (first.attributes or {})["notification.outcome"] == "retried"
    assert (second.attributes or {})["notification.outcome"] == "delivered"
    assert (second.attributes or {})["notification.attempt"] == 2
    failed_send = next(
        s
        for s in _named(spans, "smtp send", nid)
        if s.parent is not None and s.parent.span_id == first.context.span_id
    )
    assert failed_send.status.status_code is StatusCode.ERROR
    assert failed_send.status.description == "TransientFailure"
