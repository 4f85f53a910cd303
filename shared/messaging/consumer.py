"""The consumer runtime both workers share; each worker adds only a `Sender`.

Messages are handled in batches of whatever is in hand (up to the prefetch):

1. **Claim** the whole batch in one statement (`StatusStore.claim`). A claim is exclusive and
   fenced: a copy of a message whose notification is finished, or whose attempt is older than
   one already seen, loses the claim and is acked without sending
   (`notification_duplicate_deliveries_suppressed_total`). A copy whose notification another
   live claim holds is parked in the delay queue that covers the rest of that lease, so it
   takes over at once if the holder died mid-send, and is acked when it finds the row finished.
2. **Check the policy** at delivery time: the user's current contact (opted out: `skipped`;
   deleted: `skipped`; a new address or device list is used).
3. **Send** each claimed message concurrently through the channel's `Sender`, under a lease
   the runtime keeps extending.
4. **Record** the outcomes of many sends in one statement (`StatusStore.finish`, conditional on
   each claim's token), then **ack** with `multiple=True` as far as every earlier delivery is
   settled. A write after the provider accepted is retried in place, never turned into a
   requeue: giving the message back would send it again.

Retries never sleep in the consumer: the next attempt is published (confirmed) to the delay
queue whose TTL covers the backoff, and that queue dead-letters it back to the work queue. A
notification keeps retrying until its retry budget (`retry_budget_seconds`, from acceptance) is
spent. When the provider itself fails `provider_failure_threshold` sends in a row, the
consumer is cancelled and the provider probed every `provider_probe_seconds`; messages wait in
the queue meanwhile, and consuming resumes when the provider answers.

Traces: each message gets a `process <queue>` span continuing the trace its headers carry
(`shared/tracing.py`); the claim and the finish, batched statements, add a child span per
message, and the sender's spans (the provider call) are children of it too.

A crash at any point leaves messages unacked and claims leased: the broker redelivers the
messages, which are parked until the lease lapses and then claim it; the reconciler (in the
gateway) enqueues any notification whose lease lapsed with no message left to take it. A
connection lost mid-batch is the same: acks on the dead channel are given up at once (never
awaited for good), and the redeliveries find their outcomes recorded. A handling error of
our own code gives the claim back and requeues the message; the claim counts it, and past
`max_claims_per_attempt` the notification is `failed` (`handler_error`) with a copy in
`failed.queue`, so nothing loops forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)
from opentelemetry.trace import INVALID_SPAN, Span
from prometheus_client import Counter, Gauge
from pydantic import ValidationError

from shared.contacts import ContactDirectory, UserNotFound
from shared.errors import DependencyUnavailable, TransientError
from shared.logging import correlation_id_var
from shared.messaging.acks import AckWindow
from shared.messaging.delivery import (
    Attempt,
    PermanentFailure,
    Sender,
    SkipDelivery,
    TransientFailure,
    UncertainDelivery,
    is_outage,
    retry_in_place,
)
from shared.messaging.message import Channel, NotificationMessage
from shared.messaging.policy import Skip, apply_policy
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
from shared.notification_status import (
    Claim,
    ClaimOutcome,
    Finish,
    NotificationStatus,
    StatusStore,
)
from shared.settings import Settings
from shared.tracing import activated, consume_span, enabled, fail

logger = logging.getLogger("shared.messaging.consumer")

S = NotificationStatus

DUPLICATES_SUPPRESSED = Counter(
    "notification_duplicate_deliveries_suppressed_total",
    "Copies of a message acked without sending because another copy held (or had finished) "
    "the notification.",
    ["channel"],
)
UNCERTAIN_DELIVERIES = Counter(
    "notification_uncertain_deliveries_total",
    "Sends whose outcome is unknown (the reply was lost after the provider took the message); "
    "retried with the same message id.",
    ["channel"],
)
PROVIDER_UP = Gauge(
    "notification_provider_up",
    "1 while the channel's provider answers; 0 while the worker has paused consuming.",
    ["channel"],
)
CLAIMS_LOST = Counter(
    "notification_claims_lost_total",
    "Outcomes not recorded because the claim had lapsed and another worker took it over.",
    ["channel"],
)
POLICY_UNCHECKED = Counter(
    "notification_policy_check_unavailable_total",
    "Sends that went out with the contact of acceptance because the user service could not "
    "be asked for the current one.",
    ["channel"],
)


HELD_COPY_HEADER = "x-held-copy"
"""Marks a copy parked while another claim held its notification (counted once, when parked)."""


class _Requeue(Exception):
    """Give the message back to the broker (after a short pause) without an outcome."""

    def __init__(self, reason: str, *, handler_error: bool) -> None:
        super().__init__(reason)
        self.handler_error = handler_error


@dataclass
class _Pending:
    finish: Finish
    incoming: AbstractIncomingMessage
    span: Span
    done: asyncio.Future[bool] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


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
        contacts: ContactDirectory | None = None,
    ) -> None:
        self.settings = settings
        self.channel_kind = channel
        self.sender = sender
        self.status = status_store
        self.service = service
        self.contacts = contacts
        self.publisher = Publisher(settings, connection_name=f"{service}-retries")
        self.connection: AbstractRobustConnection | None = None
        self.amqp_channel: AbstractChannel | None = None
        self.queue: AbstractQueue | None = None
        self.consumer_tag: str | None = None
        self.acks = AckWindow()
        self._inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._stopping = False
        self._paused = False
        self._provider_failures = 0
        self._held: dict[uuid.UUID, uuid.UUID] = {}
        self._sending: set[int] = set()
        self._pending: list[_Pending] = []
        self._record_wake = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loops: list[asyncio.Task[None]] = []
        self._probe: asyncio.Task[None] | None = None
        self._pausing: asyncio.Task[None] | None = None
        PROVIDER_UP.labels(channel.value).set(1)
        # Every label set exists from the start, so dashboards and rate() see zeros rather
        # than no series until the first occurrence.
        for outcome in (
            "delivered",
            "retried",
            "failed",
            "skipped",
            "expired",
            "duplicate",
            "deferred",
            "poison",
            "requeued",
        ):
            MESSAGES_CONSUMED.labels(self.queue_name, outcome)
        for reason in DEAD_LETTER_REASONS:
            DEAD_LETTERED.labels(self.queue_name, reason)
        DELIVERY_LATENCY.labels(channel.value)
        DUPLICATES_SUPPRESSED.labels(channel.value)
        UNCERTAIN_DELIVERIES.labels(channel.value)
        CLAIMS_LOST.labels(channel.value)
        POLICY_UNCHECKED.labels(channel.value)

    @property
    def queue_name(self) -> str:
        return f"{self.channel_kind.value}.queue"

    # --- lifecycle -----------------------------------------------------------------------

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
        self._loops = [
            asyncio.create_task(self._batch_loop(), name="consumer-batches"),
            asyncio.create_task(self._record_loop(), name="consumer-records"),
            asyncio.create_task(self._lease_loop(), name="consumer-leases"),
        ]
        self.consumer_tag = await self.queue.consume(self.handle)
        logger.info("consuming %s (prefetch %d)", self.queue_name, self.settings.worker_prefetch)

    async def stop(self) -> None:
        """Stop taking messages, let those in hand finish within the deadline, then close.

        Messages delivered after the cancel are requeued untouched; sends still running at the
        deadline are cancelled (their claims lapse and the reconciler enqueues them again).
        Anything unacked when the channel closes goes back to the queue, so a slow shutdown
        costs a redelivery, never a message. Calling it again is a no-op.
        """
        if self._stopping:
            return
        self._stopping = True
        await self._cancel_consumer()
        if self._probe is not None:
            self._probe.cancel()
        while not self._inbox.empty():
            await self.acks.nack(self._inbox.get_nowait(), requeue=True)
            self._done()
        try:
            await asyncio.wait_for(self._idle.wait(), self.settings.worker_shutdown_seconds)
        except TimeoutError:
            logger.warning(
                "%d messages still in hand at shutdown; they will be redelivered", self._in_flight
            )
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for loop in self._loops:
            loop.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
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
            and not self._paused
            and self.consumer_tag is not None
            and self.connection is not None
            and not self.connection.is_closed
            and self.amqp_channel is not None
            and not self.amqp_channel.is_closed
        )

    @property
    def is_paused(self) -> bool:
        """Consuming is paused because the provider is down (the worker is still healthy)."""
        return self._paused

    async def handle(self, incoming: AbstractIncomingMessage) -> None:
        """The broker's callback: note the delivery and hand it to the batch loop."""
        self.acks.track(incoming)
        if self._stopping or self._paused:
            # Delivered between our cancel and the broker's cancel-ok: hand it back untouched.
            await self.acks.nack(incoming, requeue=True)
            MESSAGES_CONSUMED.labels(self.queue_name, "requeued").inc()
            return
        self._in_flight += 1
        self._idle.clear()
        self._inbox.put_nowait(incoming)

    def _done(self, count: int = 1) -> None:
        self._in_flight -= count
        if self._in_flight <= 0:
            self._in_flight = 0
            self._idle.set()

    # --- claiming a batch ----------------------------------------------------------------

    async def _batch_loop(self) -> None:
        while True:
            batch = [await self._inbox.get()]
            while len(batch) < self.settings.worker_prefetch and not self._inbox.empty():
                batch.append(self._inbox.get_nowait())
            try:
                await self._claim_batch(batch)
            except Exception as exc:  # a bug here must not stop the loop
                unsettled = [
                    i for i in batch if self.acks.is_open(i) and id(i) not in self._sending
                ]
                logger.exception("batch handling failed; requeueing %d messages", len(unsettled))
                await self._requeue_all(unsettled, exc)

    async def _claim_batch(self, batch: list[AbstractIncomingMessage]) -> None:
        candidates: dict[uuid.UUID, tuple[AbstractIncomingMessage, NotificationMessage]] = {}
        for incoming in batch:
            message = await self._parse(incoming)
            if message is None:
                continue
            held = candidates.get(message.notification_id)
            if held is None or message.attempt > held[1].attempt:
                if held is not None:
                    await self._duplicate(held[0])
                candidates[message.notification_id] = (incoming, message)
            else:
                await self._duplicate(incoming)
        if not candidates:
            return
        spans = self._consume_spans(candidates) if enabled() else {}
        try:
            claims = await self.status.claim(
                [(nid, m.attempt) for nid, (_, m) in candidates.items()],
                lease_seconds=self.settings.claim_lease_seconds,
                max_claims=self.settings.max_claims_per_attempt,
                spans=spans or None,
            )
        except Exception as exc:
            for span in spans.values():
                fail(span, exc)
                span.end()
            if not is_outage(exc):
                raise
            logger.warning("claiming failed (%s); requeueing the batch", type(exc).__name__)
            await self._requeue_all([i for i, _ in candidates.values()], exc)
            return
        for notification_id, (incoming, message) in candidates.items():
            span = spans.get(notification_id, INVALID_SPAN)
            claim = claims[notification_id]
            if claim.outcome is ClaimOutcome.CLAIMED:
                self._start_delivery(incoming, message, claim, span)
                continue
            try:
                with activated(span):
                    await self._not_claimed(incoming, message, claim)
            finally:
                span.set_attribute("notification.outcome", claim.outcome.value)
                span.end()

    def _consume_spans(
        self, candidates: dict[uuid.UUID, tuple[AbstractIncomingMessage, NotificationMessage]]
    ) -> dict[uuid.UUID, Span]:
        """One `process <queue>` span per message, continuing the trace of its publish."""
        return {
            nid: consume_span(
                self.queue_name,
                incoming.headers,
                {
                    "messaging.message.id": str(nid),
                    "notification.id": str(nid),
                    "notification.channel": self.channel_kind.value,
                    "notification.attempt": message.attempt,
                    "notification.template_code": message.template.code,
                    "notification.correlation_id": message.correlation_id,
                },
            )
            for nid, (incoming, message) in candidates.items()
        }

    def _start_delivery(
        self,
        incoming: AbstractIncomingMessage,
        message: NotificationMessage,
        claim: Claim,
        span: Span,
    ) -> None:
        assert claim.token is not None
        self._held[message.notification_id] = claim.token
        self._sending.add(id(incoming))
        with activated(span):  # the task copies the context: its spans are children of `span`
            task = asyncio.create_task(self._deliver(incoming, message, claim, span))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _not_claimed(
        self, incoming: AbstractIncomingMessage, message: NotificationMessage, claim: Claim
    ) -> None:
        correlation_id_var.set(message.correlation_id)
        if claim.outcome is ClaimOutcome.UNKNOWN:
            logger.error("no status row for notification %s", message.notification_id)
            await self._finish_untracked(
                incoming, "poison", "unknown_notification", "no status row"
            )
        elif claim.outcome is ClaimOutcome.POISON:
            logger.error(
                "notification %s was claimed %d times without an outcome; failing it",
                message.notification_id,
                self.settings.max_claims_per_attempt,
            )
            await self._finish_untracked(
                incoming, "poison", "handler_error", "claimed repeatedly without an outcome"
            )
        elif claim.outcome is ClaimOutcome.EXPIRED:
            logger.info("notification %s expired before delivery", message.notification_id)
            await self._ack(incoming, "expired")
        elif claim.held_for_seconds is not None:
            await self._defer_held_copy(incoming, message, claim.held_for_seconds)
        else:
            logger.info(
                "notification %s is %s; acking attempt %d without sending",
                message.notification_id,
                claim.status,
                message.attempt,
            )
            await self._duplicate(incoming, counted=HELD_COPY_HEADER not in incoming.headers)

    async def _defer_held_copy(
        self, incoming: AbstractIncomingMessage, message: NotificationMessage, held_for: float
    ) -> None:
        """Another claim holds the notification: park this copy until that lease lapses.

        The holder may be alive (then the copy comes back to a finished row and is acked) or
        dead, killed mid-send (then the copy is what takes the notification over as soon as the
        lease lapses, without waiting for the reconciler). Either way it is not sent now.
        """
        level = delay_level(int(held_for * 1000) + 100, self.settings.retry_delay_levels_ms)
        headers = {k: v for k, v in (incoming.headers or {}).items() if not k.startswith("x-death")}
        try:
            await self.publisher.publish_to_queue(
                delay_queue_name(self.channel_kind, level),
                incoming.body,
                message_id=str(message.notification_id),
                correlation_id=message.correlation_id,
                priority=message.priority,
                headers={**headers, HELD_COPY_HEADER: 1},
            )
        except PublishError as exc:
            await self._requeue_all([incoming], exc)
            return
        if HELD_COPY_HEADER not in incoming.headers:
            DUPLICATES_SUPPRESSED.labels(self.channel_kind.value).inc()
        await self._ack(incoming, "deferred")

    async def _parse(self, incoming: AbstractIncomingMessage) -> NotificationMessage | None:
        """The message, or None after sending an unusable one to the DLQ."""
        try:
            message = NotificationMessage.from_bytes(incoming.body)
        except ValidationError as exc:
            correlation = incoming.headers.get("x-correlation-id")
            correlation_id_var.set(str(correlation) if correlation else None)
            logger.error("unparseable message %s sent to %s", incoming.message_id, FAILED_QUEUE)
            await self._finish_untracked(incoming, "poison", "poison", _short(str(exc)))
            return None
        if message.notification_type != self.channel_kind:
            logger.error(
                "a %s message reached %s; sending it to %s",
                message.notification_type,
                self.queue_name,
                FAILED_QUEUE,
            )
            await self._finish_untracked(
                incoming, "poison", "poison", f"wrong channel {message.notification_type}"
            )
            return None
        return message

    # --- one delivery --------------------------------------------------------------------

    async def _deliver(
        self,
        incoming: AbstractIncomingMessage,
        message: NotificationMessage,
        claim: Claim,
        span: Span = INVALID_SPAN,
    ) -> None:
        correlation_id_var.set(message.correlation_id)
        started = time.perf_counter()
        assert claim.token is not None
        outcome = "requeued"
        try:
            finish = await self._attempt(message, claim, claim.token)
            outcome = await self._record(finish, incoming, span)
        except _Requeue as requeue:
            outcome = await self._give_back(incoming, message, claim.token, requeue)
        except asyncio.CancelledError:
            # Cut off at the shutdown deadline: the closing channel requeues the message, and
            # giving the claim back lets its redelivery be taken at once (rather than after
            # the lease and the reconciler); whether the provider got it is unknown either way.
            MESSAGES_CONSUMED.labels(self.queue_name, "requeued").inc()
            with contextlib.suppress(Exception):
                await asyncio.shield(
                    self.status.release(message.notification_id, claim.token, handler_error=False)
                )
            raise
        except Exception as exc:
            fail(span, exc)
            logger.exception("handling notification %s failed", message.notification_id)
            outcome = await self._give_back(
                incoming, message, claim.token, _Requeue(str(exc), handler_error=not is_outage(exc))
            )
        finally:
            self._held.pop(message.notification_id, None)
            self._sending.discard(id(incoming))
            MESSAGE_HANDLING_SECONDS.labels(self.queue_name).observe(time.perf_counter() - started)
            span.set_attribute("notification.outcome", outcome)
            span.end()
        MESSAGES_CONSUMED.labels(self.queue_name, outcome).inc()

    async def _attempt(
        self, message: NotificationMessage, claim: Claim, token: uuid.UUID
    ) -> Finish:
        """Policy, send, and what the outcome means; raises `_Requeue` to give it back."""
        claimed_at = time.monotonic()
        checked = await self._current_policy(message)
        if isinstance(checked, Skip):
            logger.info(
                "notification %s skipped at delivery: %s", message.notification_id, checked.reason
            )
            return Finish(
                message.notification_id,
                token,
                S.SKIPPED,
                reason=checked.reason,
                detail=checked.detail,
            )
        attempt = Attempt(
            notification_id=message.notification_id,
            token=token,
            number=message.attempt,
            expires_in_seconds=(
                (claim.expires_at - claim.db_now).total_seconds()
                if claim.expires_at is not None and claim.db_now is not None
                else None
            ),
        )
        try:
            result = await self.sender.deliver(checked, attempt)
        except SkipDelivery as exc:
            logger.info("notification %s skipped: %s", message.notification_id, exc.reason)
            return Finish(
                message.notification_id, token, S.SKIPPED, reason=exc.reason, detail=exc.detail
            )
        except PermanentFailure as exc:
            self._provider_answered()
            await self._dead_letter_or_requeue(message, "permanent_failure", exc.reason)
            return _failed(message, token, "permanent_failure", exc.reason)
        except TransientFailure as exc:
            self._provider_failed(exc)
            return await self._retry_later(message, claim, token, exc)
        self._provider_answered()
        if claim.db_now is not None and claim.due_since is not None:
            waited = (claim.db_now - claim.due_since).total_seconds()
            DELIVERY_LATENCY.labels(self.channel_kind.value).observe(
                waited + time.monotonic() - claimed_at
            )
        logger.info("delivered notification %s", message.notification_id)
        return Finish(
            message.notification_id,
            token,
            S.DELIVERED,
            provider_id=_short(result.provider_message_id) if result.provider_message_id else None,
            detail=_short(result.detail) if result.detail else None,
        )

    async def _current_policy(self, message: NotificationMessage) -> NotificationMessage | Skip:
        if self.contacts is None:
            return message
        try:
            contact = await self.contacts.get(message.user_id)
        except UserNotFound:
            return Skip("user_deleted", "the user no longer exists")
        except (TransientError, DependencyUnavailable) as exc:
            POLICY_UNCHECKED.labels(self.channel_kind.value).inc()
            logger.warning(
                "user service unavailable (%s); sending with the contact of acceptance", exc
            )
            return message
        return apply_policy(message, contact)

    async def _retry_later(
        self, message: NotificationMessage, claim: Claim, token: uuid.UUID, exc: TransientFailure
    ) -> Finish:
        if isinstance(exc, UncertainDelivery):
            UNCERTAIN_DELIVERIES.labels(self.channel_kind.value).inc()
        wait = backoff_ms(
            message.attempt,
            base_ms=self.settings.retry_base_delay_ms,
            max_ms=self.settings.retry_max_delay_ms,
            retry_after_ms=int(exc.retry_after_seconds * 1000) if exc.retry_after_seconds else None,
        )
        level = delay_level(wait, self.settings.retry_delay_levels_ms)
        spent = (
            (claim.db_now - claim.due_since).total_seconds()
            if claim.db_now is not None and claim.due_since is not None
            else 0.0
        )
        if spent + level / 1000 > self.settings.retry_budget_seconds:
            if exc.partial is not None:
                return Finish(
                    message.notification_id,
                    token,
                    S.DELIVERED,
                    provider_id=exc.partial.provider_message_id,
                    detail=_short(exc.partial.detail or exc.reason),
                )
            reason = (
                f"{exc.reason} (retry budget of {self.settings.retry_budget_seconds:.0f} s spent)"
            )
            await self._dead_letter_or_requeue(message, "retry_budget_exhausted", reason)
            return _failed(message, token, "retry_budget_exhausted", reason)
        following = message.next_attempt()
        try:
            await self.publisher.publish_to_queue(
                delay_queue_name(self.channel_kind, level),
                following.to_bytes(),
                message_id=str(message.notification_id),
                correlation_id=message.correlation_id,
                priority=message.priority,
                headers={
                    "x-correlation-id": message.correlation_id,
                    "x-attempt": following.attempt,
                },
            )
        except PublishError as publish_error:
            raise _Requeue(f"retry publish failed: {publish_error}", handler_error=False) from exc
        logger.warning(
            "notification %s attempt %d failed (%s); retrying in %d ms",
            message.notification_id,
            message.attempt,
            exc.reason,
            level,
        )
        return Finish(
            message.notification_id,
            token,
            S.RETRYING,
            reason="provider_unavailable" if exc.provider_down else "transient_failure",
            error=_short(exc.reason),
            detail=f"attempt {message.attempt} failed: {_short(exc.reason)}; next in {level} ms",
            retry_in_ms=level,
        )

    async def _dead_letter_or_requeue(
        self, message: NotificationMessage, reason: str, error: str
    ) -> None:
        try:
            await self._publish_dead_letter(
                message.to_bytes(),
                message_id=str(message.notification_id),
                correlation_id=message.correlation_id,
                headers={"x-correlation-id": message.correlation_id},
                reason=reason,
                error=error,
            )
        except PublishError as exc:
            raise _Requeue(f"dead-letter publish failed: {exc}", handler_error=False) from exc

    async def _give_back(
        self,
        incoming: AbstractIncomingMessage,
        message: NotificationMessage,
        token: uuid.UUID,
        requeue: _Requeue,
    ) -> str:
        """No outcome: give the claim back (counting a handler error toward the claim limit)
        and requeue the message after a short pause."""
        logger.warning(
            "notification %s goes back to the queue: %s", message.notification_id, requeue
        )
        with contextlib.suppress(Exception):
            await self.status.release(
                message.notification_id, token, handler_error=requeue.handler_error
            )
        if not self._stopping:
            await asyncio.sleep(self.requeue_pause_seconds)
        await self.acks.nack(incoming, requeue=True)
        self._done()
        return "requeued"

    # --- recording outcomes --------------------------------------------------------------

    async def _record(
        self, finish: Finish, incoming: AbstractIncomingMessage, span: Span = INVALID_SPAN
    ) -> str:
        """Queue the outcome for the next batched write; return once written and acked."""
        pending = _Pending(finish, incoming, span)
        self._pending.append(pending)
        self._record_wake.set()
        await pending.done
        return {
            S.DELIVERED: "delivered",
            S.RETRYING: "retried",
            S.FAILED: "failed",
            S.SKIPPED: "skipped",
        }.get(finish.status, finish.status.value)

    async def _record_loop(self) -> None:
        while True:
            await self._record_wake.wait()
            self._record_wake.clear()
            batch, self._pending = self._pending, []
            if not batch:
                continue
            try:
                await self._write_outcomes(batch)
            except Exception:  # a bug here must not stop every later outcome being recorded
                logger.exception("recording %d outcomes failed; requeueing them", len(batch))
                for pending in batch:
                    if not pending.done.done():
                        await self.acks.nack(pending.incoming, requeue=True)
                        self._done()
                        pending.done.set_result(False)

    async def _write_outcomes(self, batch: list[_Pending]) -> None:
        try:
            spans = {p.finish.notification_id: p.span for p in batch} if enabled() else None
            held = await retry_in_place(
                lambda: self.status.finish([p.finish for p in batch], spans=spans),
                seconds=self.settings.status_write_retry_seconds,
                is_outage=is_outage,
            )
        except Exception as exc:
            # The outcomes could not be written: the claims lapse and the reconciler takes the
            # notifications again. The one window where a sent message can be sent twice.
            logger.error(
                "could not record %d outcomes (%s); their claims will lapse",
                len(batch),
                type(exc).__name__,
            )
            for pending in batch:
                await self.acks.nack(pending.incoming, requeue=True)
                self._done()
                pending.done.set_result(False)
            return
        for pending in batch:
            if pending.finish.notification_id not in held:
                CLAIMS_LOST.labels(self.channel_kind.value).inc()
                logger.warning(
                    "claim of notification %s lapsed before its outcome was recorded",
                    pending.finish.notification_id,
                )
        await self.acks.ack_many(p.incoming for p in batch)
        for pending in batch:
            self._done()
            pending.done.set_result(True)

    async def _lease_loop(self) -> None:
        """Keep the claims of running sends alive (one statement for all of them)."""
        interval = max(0.2, self.settings.claim_lease_seconds / 3)
        while True:
            await asyncio.sleep(interval)
            held = list(self._held.items())
            if not held:
                continue
            try:
                await self.status.extend_leases(held, self.settings.claim_lease_seconds)
            except Exception as exc:
                logger.warning("extending %d leases failed: %s", len(held), type(exc).__name__)

    # --- the provider gate ---------------------------------------------------------------

    def _provider_answered(self) -> None:
        self._provider_failures = 0

    def _provider_failed(self, exc: TransientFailure) -> None:
        if not exc.provider_down:
            return
        self._provider_failures += 1
        if self._provider_failures >= self.settings.provider_failure_threshold and not self._paused:
            self._pausing = asyncio.get_running_loop().create_task(self._pause())

    async def _pause(self) -> None:
        if self._paused or self._stopping:
            return
        self._paused = True
        PROVIDER_UP.labels(self.channel_kind.value).set(0)
        logger.warning(
            "%s failed %d sends in a row; pausing %s until it answers",
            self.channel_kind.value,
            self._provider_failures,
            self.queue_name,
        )
        await self._cancel_consumer()
        self._probe = asyncio.create_task(self._probe_until_up(), name="provider-probe")

    async def _probe_until_up(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.settings.provider_probe_seconds)
            try:
                up = await self.sender.probe()
            except Exception as exc:
                logger.info("provider probe failed: %s", type(exc).__name__)
                up = False
            if up:
                await self._resume()
                return

    async def _resume(self) -> None:
        if self._stopping or self.queue is None:
            return
        self._provider_failures = 0
        self._paused = False
        PROVIDER_UP.labels(self.channel_kind.value).set(1)
        self.consumer_tag = await self.queue.consume(self.handle)
        logger.info("%s answers again; consuming %s", self.channel_kind.value, self.queue_name)

    async def _cancel_consumer(self) -> None:
        if self.queue is not None and self.consumer_tag is not None:
            try:
                await self.queue.cancel(self.consumer_tag)
            except Exception as exc:  # the connection may already be gone
                logger.warning("consumer cancel failed: %s", type(exc).__name__)
            self.consumer_tag = None

    # --- settling ------------------------------------------------------------------------

    async def _ack(self, incoming: AbstractIncomingMessage, outcome: str) -> None:
        await self.acks.ack(incoming)
        MESSAGES_CONSUMED.labels(self.queue_name, outcome).inc()
        self._done()

    async def _duplicate(self, incoming: AbstractIncomingMessage, *, counted: bool = True) -> None:
        """Ack a copy without sending; `counted=False` for a parked copy counted when parked."""
        if counted:
            DUPLICATES_SUPPRESSED.labels(self.channel_kind.value).inc()
        await self._ack(incoming, "duplicate")

    async def _finish_untracked(
        self, incoming: AbstractIncomingMessage, outcome: str, reason: str, error: str
    ) -> None:
        """To `failed.queue` with the reason, then ack (the status row is not ours to move)."""
        headers = {k: v for k, v in (incoming.headers or {}).items() if not k.startswith("x-death")}
        try:
            await self._publish_dead_letter(
                incoming.body,
                message_id=incoming.message_id,
                correlation_id=incoming.correlation_id,
                headers=headers,
                reason=reason,
                error=error,
            )
        except PublishError as exc:
            await self._requeue_all([incoming], exc)
            return
        await self._ack(incoming, outcome)

    async def _publish_dead_letter(
        self,
        body: bytes,
        *,
        message_id: str | None,
        correlation_id: str | None,
        headers: dict[str, Any],
        reason: str,
        error: str,
    ) -> None:
        await self.publisher.publish_to_queue(
            FAILED_QUEUE,
            body,
            message_id=message_id,
            correlation_id=correlation_id,
            headers={
                **headers,
                "x-failure-reason": reason,
                "x-failure-error": _short(error),
                "x-original-queue": self.queue_name,
                "x-original-routing-key": self.channel_kind.value,
                "x-failed-by": self.service,
            },
        )
        DEAD_LETTERED.labels(self.queue_name, reason).inc()

    async def _requeue_all(self, batch: Sequence[AbstractIncomingMessage], exc: Exception) -> None:
        if not self._stopping:
            await asyncio.sleep(self.requeue_pause_seconds)
        for incoming in batch:
            await self.acks.nack(incoming, requeue=True)
            MESSAGES_CONSUMED.labels(self.queue_name, "requeued").inc()
            self._done()


def _failed(message: NotificationMessage, token: uuid.UUID, reason: str, error: str) -> Finish:
    logger.error("notification %s failed: %s", message.notification_id, error)
    return Finish(
        message.notification_id,
        token,
        S.FAILED,
        reason=reason,
        error=_short(error),
        detail=f"{reason}: {_short(error)}",
    )


def _short(text: str, limit: int = 500) -> str:
    """Bounded and storable: PostgreSQL text refuses NUL, which would make the status write
    fail on every redelivery."""
    text = text.replace("\x00", "")
    return text if len(text) <= limit else text[: limit - 3] + "..."
