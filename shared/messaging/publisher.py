"""The confirmed, persistent publisher.

Every publish waits for the broker's confirm (or a `mandatory` return) within a timeout: a
publish while the connection is down would otherwise wait for the reconnection, holding the
caller's request open. A failed or timed-out publish raises `PublishError`; the caller decides
whether that means 503 or a retry from the outbox.

Every publish is a producer span whose W3C trace context (`traceparent`/`tracestate`) goes in
the message headers, so the consumer continues the trace (`shared/tracing.py`); while tracing
is off no header is added.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractRobustConnection

from shared.messaging.message import NotificationMessage
from shared.messaging.topology import Topology, declare_topology
from shared.metrics import MESSAGES_PUBLISHED
from shared.settings import Settings
from shared.tracing import publish_span

logger = logging.getLogger("shared.messaging.publisher")


class PublishError(Exception):
    """The broker did not confirm the message in time (or at all)."""


def build_amqp_message(
    body: bytes,
    *,
    message_id: str | None = None,
    correlation_id: str | None = None,
    priority: int = 0,
    headers: Mapping[str, Any] | None = None,
) -> aio_pika.Message:
    return aio_pika.Message(
        body,
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=message_id,
        correlation_id=correlation_id,
        priority=priority,
        timestamp=datetime.now(UTC),
        headers=dict(headers or {}),
    )


class Publisher:
    """One robust connection and one confirming channel per process."""

    def __init__(self, settings: Settings, *, connection_name: str) -> None:
        self.settings = settings
        self.connection_name = connection_name
        self.connection: AbstractRobustConnection | None = None
        self.channel: AbstractChannel | None = None
        self.topology: Topology | None = None

    async def connect(self) -> None:
        self.connection = await aio_pika.connect_robust(
            self.settings.rabbitmq_url,
            client_properties={"connection_name": self.connection_name},
            timeout=5,
        )
        self.channel = await self.connection.channel(publisher_confirms=True, on_return_raises=True)
        self.topology = await declare_topology(self.channel, self.settings.retry_delay_levels_ms)

    async def close(self) -> None:
        if self.connection is not None:
            await self.connection.close()
        self.connection = self.channel = self.topology = None

    @property
    def is_connected(self) -> bool:
        return (
            self.connection is not None
            and not self.connection.is_closed
            and self.channel is not None
            and not self.channel.is_closed
        )

    def _exchange(self) -> AbstractExchange:
        if self.topology is None:
            raise PublishError("publisher is not connected")
        return self.topology.work_exchange

    async def publish_notification(
        self, message: NotificationMessage, *, headers: Mapping[str, Any] | None = None
    ) -> None:
        await self.publish(
            self._exchange(),
            routing_key=message.notification_type.value,
            body=message.to_bytes(),
            message_id=str(message.notification_id),
            correlation_id=message.correlation_id,
            priority=message.priority,
            headers={"x-correlation-id": message.correlation_id, **(headers or {})},
        )

    async def publish_to_queue(
        self,
        queue_name: str,
        body: bytes,
        *,
        message_id: str | None = None,
        correlation_id: str | None = None,
        priority: int = 0,
        headers: Mapping[str, Any] | None = None,
    ) -> None:
        """Publish straight to a queue through the default exchange (delay queues, the DLQ)."""
        if self.channel is None:
            raise PublishError("publisher is not connected")
        await self.publish(
            self.channel.default_exchange,
            routing_key=queue_name,
            body=body,
            message_id=message_id,
            correlation_id=correlation_id,
            priority=priority,
            headers=headers,
        )

    async def publish(
        self,
        exchange: AbstractExchange,
        *,
        routing_key: str,
        body: bytes,
        message_id: str | None = None,
        correlation_id: str | None = None,
        priority: int = 0,
        headers: Mapping[str, Any] | None = None,
    ) -> None:
        with publish_span(exchange.name, routing_key, message_id) as trace_headers:
            message = build_amqp_message(
                body,
                message_id=message_id,
                correlation_id=correlation_id,
                priority=priority,
                headers={**(headers or {}), **trace_headers} if trace_headers else headers,
            )
            try:
                await asyncio.wait_for(
                    exchange.publish(message, routing_key=routing_key, mandatory=True),
                    timeout=self.settings.publish_timeout_seconds,
                )
            except TimeoutError as exc:
                raise PublishError(f"no confirm for {routing_key} within the timeout") from exc
            except Exception as exc:
                raise PublishError(
                    f"publish to {routing_key} failed: {type(exc).__name__}"
                ) from exc
        MESSAGES_PUBLISHED.labels(routing_key if exchange.name else "direct-to-queue").inc()
