"""A push's trace: one `fcm messages:send` span per device under the message's `process`
span, with FCM's outcome and never the device token."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shared.messaging.message import DeviceTarget
from tests.conftest import wait_for
from tests.integration.push_service.conftest import PushHarness
from tests.spans import in_memory_spans


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    with in_memory_spans() as exporter:
        yield exporter


async def test_each_device_send_is_a_span_of_the_message(
    exporter: InMemorySpanExporter, push: PushHarness
) -> None:
    await push.fault("phone-gone", "unregistered")
    nid = await push.notify(
        DeviceTarget(token="phone-a", platform="android"),
        DeviceTarget(token="phone-gone", platform="android"),
    )
    await wait_for(lambda: push.settled(nid))

    async def processed() -> list[ReadableSpan] | None:
        spans = list(exporter.get_finished_spans())
        done = any(
            s.name == "process push.queue"
            and (s.attributes or {}).get("notification.id") == str(nid)
            for s in spans
        )
        return spans if done else None

    spans = await wait_for(processed)
    process = next(
        s
        for s in spans
        if s.name == "process push.queue"
        and (s.attributes or {}).get("notification.id") == str(nid)
    )
    sends = [
        s
        for s in spans
        if s.name == "fcm messages:send"
        and s.parent is not None
        and s.parent.span_id == process.context.span_id
    ]
    assert sorted((s.attributes or {})["fcm.outcome"] for s in sends) == [
        "accepted",
        "unregistered",
    ]
    assert {s.context.trace_id for s in sends} == {process.context.trace_id}
    for span in spans:
        values = " ".join(str(v) for v in (span.attributes or {}).values())
        assert "phone-a" not in values and "phone-gone" not in values, span.name
