"""The consumer runtime both workers share; each worker adds only a `Sender`.

For each message: claim it (`processing`), send, record the outcome, then ack. The ack always
comes last, so a crash at any point leaves the message unacked and RabbitMQ redelivers it; the
status row makes the redelivery harmless (a `delivered` notification is acked without sending
again). The one window left: a crash after the provider accepted the message but before
`delivered` is written causes one resend.

Retries never sleep in the consumer: the next attempt is published (confirmed) to the delay
queue whose TTL covers the backoff, and that queue dead-letters it back to the work queue.
Permanent failures, exhausted attempts and unparseable messages go to `failed.queue` with
headers saying why.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)
from pydantic import ValidationError

from shared.logging import correlation_id_var
from shared.messaging.message import Channel, NotificationMessage
from shared.messaging.publisher import Publisher
from shared.messaging.retry import backoff_ms, delay_level
from shared.messaging.topology import FAILED_QUEUE, declare_topology, delay_queue_name
from shared.metrics import MESSAGE_HANDLING_SECONDS, MESSAGES_CONSUMED
from shared.notification_status import NotificationStatus, StatusStore
from shared.settings import Settings

logger = logging.getLogger("shared.messaging.consumer")


class TransientFailure(Exception):
    """Worth retrying: connection refused, timeouts, SMTP 4xx, FCM 429/5xx."""

    def __init__(self, reason: str, *, retry_after_seconds: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after_seconds = retry_after_seconds


class PermanentFailure(Exception):
    """Retrying cannot help: SMTP 5xx, an invalid address, FCM INVALID_ARGUMENT."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class DeliveryResult:
    provider_message_id: str | None = None
    detail: str | None = None


class Sender(Protocol):
    """A channel's delivery: render and send one message, or raise a failure above."""

    async def deliver(self, message: NotificationMessage) -> DeliveryResult: ...


class ConsumerRuntime:
    def __init__(
        self,
        *,
        settings: Settings,
        channel: Channel,
        sender: Sender,
        status_store: StatusStore,
        service: str,
    ) -> None:
        self.settings = settings
        self.channel_kind = channel
        self.sender = sender
        self.status = status_store
        self.service = service
        self.publisher = Publisher(settings, connection_name=f"{service}-retries")
        self.connection: AbstractRobustConnection | None = None
        self.amqp_channel: AbstractChannel | None = None
        self.queue: AbstractQueue | None = None
        self.consumer_tag: str | None = None
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def queue_name(self) -> str:
        return f"{self.channel_kind.value}.queue"

    async def start(self) -> None:
        await self.publisher.connect()
        self.connection = await aio_pika.connect_robust(
            self.settings.rabbitmq_url,
            client_properties={"connection_name": f"{self.service}-consumer"},
            timeout=5,
        )
        self.amqp_channel = await self.connection.channel()
        await self.amqp_channel.set_qos(prefetch_count=self.settings.worker_prefetch)
        topology = await declare_topology(self.amqp_channel, self.settings.retry_delay_levels_ms)
        self.queue = topology.work_queues[self.channel_kind]
        self.consumer_tag = await self.queue.consume(self.handle)
        logger.info("consuming %s (prefetch %d)", self.queue_name, self.settings.worker_prefetch)

    async def stop(self) -> None:
        """Stop taking messages, let those in hand finish within the deadline, then close.

        Messages still unacked when the channel closes go back to the queue.
        """
        if self.queue is not None and self.consumer_tag is not None:
            try:
                await self.queue.cancel(self.consumer_tag)
            except Exception as exc:  # the connection may already be gone
                logger.warning("consumer cancel failed: %s", type(exc).__name__)
        try:
            await asyncio.wait_for(self._idle.wait(), self.settings.worker_shutdown_seconds)
        except TimeoutError:
            logger.warning(
                "%d messages still in hand at shutdown; they will be redelivered", self._in_flight
            )
        if self.connection is not None:
            await self.connection.close()
        await self.publisher.close()

    @property
    def is_consuming(self) -> bool:
        return (
            self.connection is not None
            and not self.connection.is_closed
            and self.amqp_channel is not None
            and not self.amqp_channel.is_closed
        )

    async def handle(self, incoming: AbstractIncomingMessage) -> None:
        self._in_flight += 1
        self._idle.clear()
        started = time.perf_counter()
        try:
            outcome = await self._process(incoming)
            MESSAGES_CONSUMED.labels(self.queue_name, outcome).inc()
        except Exception:
            # The status store or the broker failed under us: leave the message for a
            # redelivery rather than guess. A short pause keeps a dead database from turning
            # into a hot redelivery loop.
            logger.exception("message handling failed; requeueing")
            MESSAGES_CONSUMED.labels(self.queue_name, "requeued").inc()
            await asyncio.sleep(1.0)
            try:
                await incoming.nack(requeue=True)
            except Exception as exc:
                logger.warning("nack failed (%s); the broker will redeliver", type(exc).__name__)
        finally:
            MESSAGE_HANDLING_SECONDS.labels(self.queue_name).observe(time.perf_counter() - started)
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()

    async def _process(self, incoming: AbstractIncomingMessage) -> str:
        try:
            message = NotificationMessage.from_bytes(incoming.body)
        except ValidationError as exc:
            correlation = incoming.headers.get("x-correlation-id")
            correlation_id_var.set(str(correlation) if correlation else None)
            logger.error("unparseable message %s sent to %s", incoming.message_id, FAILED_QUEUE)
            await self._dead_letter(incoming, reason="poison", error=_short(str(exc)))
            await incoming.ack()
            return "poison"

        correlation_id_var.set(message.correlation_id)
        claim = await self.status.transition(
            message.notification_id,
            NotificationStatus.PROCESSING,
            attempt=message.attempt,
            detail=f"attempt {message.attempt}",
            stale_guard=True,
        )
        if not claim.applied:
            if claim.status is None:
                logger.error("no status row for notification %s", message.notification_id)
                await self._dead_letter(
                    incoming, reason="unknown_notification", error="no status row"
                )
                await incoming.ack()
                return "poison"
            logger.info(
                "notification %s is %s; acking attempt %d without sending",
                message.notification_id,
                claim.status,
                message.attempt,
            )
            await incoming.ack()
            return "duplicate"

        try:
            result = await self.sender.deliver(message)
        except PermanentFailure as exc:
            return await self._fail(incoming, message, "permanent_failure", exc.reason)
        except TransientFailure as exc:
            return await self._retry_or_fail(incoming, message, exc.reason, exc.retry_after_seconds)
        except Exception as exc:
            logger.exception("sender raised unexpectedly; treating it as transient")
            return await self._retry_or_fail(
                incoming, message, f"unexpected: {type(exc).__name__}", None
            )

        await self.status.transition(
            message.notification_id,
            NotificationStatus.DELIVERED,
            attempt=message.attempt,
            provider_id=result.provider_message_id,
            detail=result.detail,
        )
        await incoming.ack()
        logger.info("delivered notification %s", message.notification_id)
        return "delivered"

    async def _retry_or_fail(
        self,
        incoming: AbstractIncomingMessage,
        message: NotificationMessage,
        reason: str,
        retry_after_seconds: float | None,
    ) -> str:
        if message.attempt >= self.settings.retry_max_attempts:
            return await self._fail(
                incoming,
                message,
                "attempts_exhausted",
                f"{reason} (after {message.attempt} attempts)",
            )
        wait = backoff_ms(
            message.attempt,
            base_ms=self.settings.retry_base_delay_ms,
            max_ms=self.settings.retry_max_delay_ms,
            retry_after_ms=int(retry_after_seconds * 1000) if retry_after_seconds else None,
        )
        level = delay_level(wait, self.settings.retry_delay_levels_ms)
        following = message.next_attempt()
        await self.publisher.publish_to_queue(
            delay_queue_name(self.channel_kind, level),
            following.to_bytes(),
            message_id=str(message.notification_id),
            correlation_id=message.correlation_id,
            priority=message.priority,
            headers={"x-correlation-id": message.correlation_id, "x-attempt": following.attempt},
        )
        await self.status.transition(
            message.notification_id,
            NotificationStatus.RETRYING,
            attempt=message.attempt,
            error=reason,
            detail=f"attempt {message.attempt} failed: {_short(reason)}; next in {level} ms",
        )
        await incoming.ack()
        logger.warning(
            "notification %s attempt %d failed (%s); retrying in %d ms",
            message.notification_id,
            message.attempt,
            reason,
            level,
        )
        return "retried"

    async def _fail(
        self,
        incoming: AbstractIncomingMessage,
        message: NotificationMessage,
        kind: str,
        reason: str,
    ) -> str:
        await self._dead_letter(incoming, reason=kind, error=reason)
        await self.status.transition(
            message.notification_id,
            NotificationStatus.FAILED,
            attempt=message.attempt,
            error=reason,
            detail=f"{kind}: {_short(reason)}",
        )
        await incoming.ack()
        logger.error("notification %s failed: %s", message.notification_id, reason)
        return "failed"

    async def _dead_letter(
        self, incoming: AbstractIncomingMessage, *, reason: str, error: str
    ) -> None:
        headers: dict[str, Any] = {
            k: v for k, v in (incoming.headers or {}).items() if not k.startswith("x-death")
        }
        headers.update(
            {
                "x-failure-reason": reason,
                "x-failure-error": _short(error),
                "x-original-queue": self.queue_name,
                "x-original-routing-key": self.channel_kind.value,
                "x-failed-by": self.service,
            }
        )
        await self.publisher.publish_to_queue(
            FAILED_QUEUE,
            incoming.body,
            message_id=incoming.message_id,
            correlation_id=incoming.correlation_id,
            headers=headers,
        )


def _short(text: str, limit: int = 500) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
