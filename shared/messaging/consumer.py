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

Shutdown: `stop()` cancels the consumer, refuses (requeues) anything delivered after that,
waits up to `worker_shutdown_seconds` for the messages in hand, then cancels the stragglers and
closes; whatever was not acked is redelivered by the broker. A message whose handling keeps
raising for a reason that is not an outage (a bug, bad data the database refuses) is a poison
message: after `retry_max_attempts` tries in this process it goes to `failed.queue` instead of
looping forever.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)
from aiormq.exceptions import AMQPError
from pydantic import ValidationError
from sqlalchemy.exc import InterfaceError, OperationalError
from tenacity import AsyncRetrying, retry_if_exception, stop_after_delay, wait_exponential

from shared.db import DB_UNAVAILABLE
from shared.logging import correlation_id_var
from shared.messaging.message import Channel, NotificationMessage
from shared.messaging.publisher import Publisher, PublishError
from shared.messaging.retry import backoff_ms, delay_level
from shared.messaging.topology import FAILED_QUEUE, declare_topology, delay_queue_name
from shared.metrics import (
    DEAD_LETTER_REASONS,
    DEAD_LETTERED,
    DELIVERY_LATENCY,
    MESSAGE_HANDLING_SECONDS,
    MESSAGES_CONSUMED,
)
from shared.notification_status import NotificationStatus, StatusStore
from shared.settings import Settings

logger = logging.getLogger("shared.messaging.consumer")


class TransientFailure(Exception):
    """Worth retrying: connection refused, timeouts, SMTP 4xx, FCM 429/5xx.

    `retry_after_seconds` is the provider's `Retry-After` (see `parse_retry_after`): the next
    attempt waits at least that long, whatever the backoff says.
    """

    def __init__(self, reason: str, *, retry_after_seconds: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after_seconds = retry_after_seconds


class PermanentFailure(Exception):
    """Retrying cannot help: SMTP 5xx, an invalid address, FCM INVALID_ARGUMENT."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


MAX_RETRY_AFTER_SECONDS = 24 * 3600.0


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """A `Retry-After` header (delay-seconds or an HTTP-date) as seconds from now.

    Garbage, negative values and dates in the past give None (no floor); absurd values are
    capped at a day so one bad header cannot park a message for a year.
    """
    if not value:
        return None
    text = value.strip()
    seconds: float
    if text.isdigit():
        seconds = float(text)
    else:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if seconds <= 0:
        return None
    return min(seconds, MAX_RETRY_AFTER_SECONDS)


@dataclass(frozen=True)
class DeliveryResult:
    provider_message_id: str | None = None
    detail: str | None = None


class Sender(Protocol):
    """A channel's delivery: render and send one message, or raise a failure above."""

    async def deliver(self, message: NotificationMessage) -> DeliveryResult: ...


class ConsumerRuntime:
    requeue_pause_seconds = 1.0
    """After a failed handling, before the requeue: keeps an outage from becoming a hot loop."""

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
        self._stopping = False
        self._tasks: set[asyncio.Task[Any]] = set()
        # Handling failures per message id that were not outages; bounded so a flood of
        # distinct bad messages cannot grow it without limit.
        self._failures: OrderedDict[str, int] = OrderedDict()
        # Every label set exists from the start, so dashboards and rate() see zeros rather
        # than no series until the first failure.
        for outcome in ("delivered", "retried", "failed", "duplicate", "poison", "requeued"):
            MESSAGES_CONSUMED.labels(self.queue_name, outcome)
        for reason in DEAD_LETTER_REASONS:
            DEAD_LETTERED.labels(self.queue_name, reason)
        DELIVERY_LATENCY.labels(channel.value)

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

        Messages delivered after the cancel are requeued untouched; handlers still running at
        the deadline are cancelled. Anything unacked when the channel closes goes back to the
        queue, so a slow shutdown costs a redelivery, never a message. Calling it again is a
        no-op.
        """
        if self._stopping:
            return
        self._stopping = True
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
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.connection is not None:
            await self.connection.close()
        await self.publisher.close()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def is_consuming(self) -> bool:
        return (
            not self._stopping
            and self.consumer_tag is not None
            and self.connection is not None
            and not self.connection.is_closed
            and self.amqp_channel is not None
            and not self.amqp_channel.is_closed
        )

    async def handle(self, incoming: AbstractIncomingMessage) -> None:
        if self._stopping:
            # Delivered between our cancel and the broker's cancel-ok: hand it back untouched.
            await _settle_quietly(incoming.reject(requeue=True))
            MESSAGES_CONSUMED.labels(self.queue_name, "requeued").inc()
            return
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self._in_flight += 1
        self._idle.clear()
        started = time.perf_counter()
        try:
            outcome = await self._process(incoming)
            MESSAGES_CONSUMED.labels(self.queue_name, outcome).inc()
            self._failures.pop(_failure_key(incoming), None)
        except asyncio.CancelledError:
            # Cancelled at the shutdown deadline: the closing channel requeues the message.
            MESSAGES_CONSUMED.labels(self.queue_name, "requeued").inc()
            raise
        except Exception as exc:
            MESSAGES_CONSUMED.labels(
                self.queue_name, await self._on_handling_error(incoming, exc)
            ).inc()
        finally:
            MESSAGE_HANDLING_SECONDS.labels(self.queue_name).observe(time.perf_counter() - started)
            self._in_flight -= 1
            if task is not None:
                self._tasks.discard(task)
            if self._in_flight == 0:
                self._idle.set()

    async def _on_handling_error(self, incoming: AbstractIncomingMessage, exc: Exception) -> str:
        """The status store or the broker failed under us, or the handling has a bug.

        An outage leaves the message for a redelivery rather than guessing. Anything else is
        counted per message: the same message failing `retry_max_attempts` times is poison and
        goes to the DLQ, so it cannot loop forever.
        """
        if not _is_outage(exc):
            key = _failure_key(incoming)
            count = self._failures.pop(key, 0) + 1
            self._failures[key] = count
            while len(self._failures) > 10_000:
                self._failures.popitem(last=False)
            if count >= self.settings.retry_max_attempts:
                logger.error(
                    "message %s failed handling %d times (%s); sending it to %s",
                    incoming.message_id,
                    count,
                    type(exc).__name__,
                    FAILED_QUEUE,
                    exc_info=exc,
                )
                try:
                    await self._dead_letter(
                        incoming, reason="handler_error", error=f"{type(exc).__name__}: {exc}"
                    )
                    await incoming.ack()
                    self._failures.pop(key, None)
                    return "poison"
                except Exception as dead_letter_exc:
                    logger.warning("dead-lettering failed: %s", type(dead_letter_exc).__name__)
        logger.error("message handling failed; requeueing", exc_info=exc)
        if not self._stopping:
            await asyncio.sleep(self.requeue_pause_seconds)
        await _settle_quietly(incoming.nack(requeue=True))
        return "requeued"

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
        if message.notification_type != self.channel_kind:
            logger.error(
                "a %s message reached %s; sending it to %s",
                message.notification_type,
                self.queue_name,
                FAILED_QUEUE,
            )
            await self._dead_letter(
                incoming, reason="poison", error=f"wrong channel {message.notification_type}"
            )
            await incoming.ack()
            return "poison"
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

        await self._record_delivered(message, result)
        DELIVERY_LATENCY.labels(self.channel_kind.value).observe(_since(message.created_at))
        await incoming.ack()
        logger.info("delivered notification %s", message.notification_id)
        return "delivered"

    async def _record_delivered(self, message: NotificationMessage, result: DeliveryResult) -> None:
        """Write `delivered`, riding out a short database outage.

        The provider already has the message: giving up here would requeue it and send it
        again, so this write (and only this one) is retried in place, with backoff, for up to
        `status_write_retry_seconds` before the message is left to a redelivery.
        """
        retrying = AsyncRetrying(
            retry=retry_if_exception(_is_outage),
            wait=wait_exponential(multiplier=0.1, max=2.0),
            stop=stop_after_delay(self.settings.status_write_retry_seconds),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                await self.status.transition(
                    message.notification_id,
                    NotificationStatus.DELIVERED,
                    attempt=message.attempt,
                    provider_id=(
                        _short(result.provider_message_id) if result.provider_message_id else None
                    ),
                    detail=_short(result.detail) if result.detail else None,
                )

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
        if level < wait:
            logger.info(
                "wanted wait %d ms exceeds the largest delay queue; waiting %d ms", wait, level
            )
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
            error=_short(reason),
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
            error=_short(reason),
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
        DEAD_LETTERED.labels(self.queue_name, reason).inc()


def _since(moment: datetime) -> float:
    """Seconds from `moment` (naive means UTC) to now, never negative (clock skew)."""
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return max(0.0, (datetime.now(UTC) - aware).total_seconds())


def _short(text: str, limit: int = 500) -> str:
    """Bounded and storable: PostgreSQL text refuses NUL, which would make the status write
    fail on every redelivery."""
    text = text.replace("\x00", "")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _failure_key(incoming: AbstractIncomingMessage) -> str:
    return incoming.message_id or f"tag:{incoming.delivery_tag}"


_OUTAGES: tuple[type[BaseException], ...] = (
    *DB_UNAVAILABLE,
    OSError,
    TimeoutError,
    OperationalError,
    InterfaceError,
    PublishError,
    AMQPError,
)


def _is_outage(exc: BaseException) -> bool:
    """A dependency being down (retry forever) rather than this message being bad."""
    return isinstance(exc, _OUTAGES) or getattr(exc, "connection_invalidated", False) is True


async def _settle_quietly(settle: Any) -> None:
    """Ack/nack/reject on a channel that may be closing: the broker redelivers anyway."""
    try:
        await settle
    except Exception as exc:
        logger.warning(
            "settling a message failed (%s); the broker will redeliver", type(exc).__name__
        )
