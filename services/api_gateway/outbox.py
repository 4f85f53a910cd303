"""The transactional outbox: how a 202 stays true when RabbitMQ is down.

The accept statement (`store.py`) writes the message into `api_gateway.outbox` in the same
transaction as the status row. The request then publishes it at once (confirmed, persistent,
short timeout) and hands the row id to a batcher that deletes published rows in bulk, off the
hot path. If the broker is down or does not confirm, the row simply stays, and the relay (a
task of each gateway process) publishes it once the broker is back: it takes due rows with
`SELECT ... FOR UPDATE SKIP LOCKED` (so several gateways share the work without overlap), in
batches, backing off per row on failures. The same relay releases `scheduled` notifications
(quiet hours, a `send_at`, a fallback) when their `available_at` comes, moving them to `queued`
first; a fallback whose send was delivered in time is `skipped` instead (`primary_delivered`).

A fresh row is not due until `outbox_inline_grace_seconds` have passed, so the relay never
races the inline publish. Rare double publishes (a crash between the confirm and the delete)
are harmless: workers claim a notification through its status row and drop duplicates.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
from prometheus_client import Counter, Gauge

from services.api_gateway.preferences import Decision
from services.api_gateway.settings import GatewaySettings
from shared.db import DB_UNAVAILABLE
from shared.messaging.message import NotificationMessage
from shared.messaging.publisher import Publisher, PublishError
from shared.notification_status import OPEN, NotificationStatus, StatusStore

logger = logging.getLogger("api_gateway.outbox")

OUTBOX_PUBLISHED = Counter(
    "notifications_gateway_outbox_published_total",
    "Outbox messages confirmed by the broker, by path (inline on the request, or relay).",
    ["path"],
)
OUTBOX_PUBLISH_FAILURES = Counter(
    "notifications_gateway_outbox_publish_failures_total",
    "Publishes that failed or timed out (the message stays in the outbox), by path.",
    ["path"],
)
OUTBOX_BACKLOG = Gauge(
    "notifications_gateway_outbox_backlog",
    "Rows in the outbox (unpublished messages and scheduled notifications), last counted.",
)

S = NotificationStatus

_DUE = """
    SELECT o.id, o.notification_id, o.routing_key, o.payload, o.priority, o.correlation_id,
           o.kind, o.attempts, s.status, p.status AS primary_status
      FROM api_gateway.outbox o
      LEFT JOIN api_gateway.notification_statuses s ON s.id = o.notification_id
      LEFT JOIN api_gateway.notification_statuses p ON p.id = s.fallback_of
     WHERE o.available_at <= now()
     ORDER BY o.available_at
     LIMIT $1
       FOR UPDATE OF o SKIP LOCKED
"""
_POSTPONE = """
    UPDATE api_gateway.outbox
       SET attempts = attempts + 1, last_error = $2,
           available_at = now() + make_interval(secs => $3)
     WHERE id = $1
"""
_MAKE_DUE = "UPDATE api_gateway.outbox SET available_at = now() WHERE id = $1"
_DELETE_IDS = "DELETE FROM api_gateway.outbox WHERE id = ANY($1::bigint[])"
_COUNT = "SELECT count(*) FROM api_gateway.outbox"


ReleaseCheck = Callable[[NotificationMessage], Awaitable[Decision]]
"""Decides again, when a scheduled notification comes due, whether and when it may go."""


@dataclass(frozen=True)
class OutboxMessage:
    routing_key: str
    body: bytes
    message_id: str
    correlation_id: str | None
    priority: int


def broker_ready(publisher: Publisher) -> bool:
    return publisher.is_connected and publisher.topology is not None


class Outbox:
    """Inline publishing for the request path, plus the relay and housekeeping tasks."""

    def __init__(
        self,
        settings: GatewaySettings,
        *,
        publisher: Publisher,
        pool: asyncpg.Pool,
        purge_expired: Any = None,
        release_check: ReleaseCheck | None = None,
    ) -> None:
        self.settings = settings
        self.publisher = publisher
        self.pool = pool
        self.release_check = release_check
        self._purge_expired = purge_expired
        self._published: list[int] = []
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._inline_failures = 0
        self._last_failure_log = -1e9

    # --- the request path ---------------------------------------------------------------

    async def publish_inline(self, outbox_id: int, message: OutboxMessage) -> bool:
        """Publish now; on any failure leave the row for the relay (and make it due)."""
        if broker_ready(self.publisher):
            try:
                await asyncio.wait_for(
                    self._publish(message), self.settings.gateway_inline_publish_timeout_seconds
                )
            except (PublishError, TimeoutError) as exc:
                self._log_inline_failure(exc)
            else:
                OUTBOX_PUBLISHED.labels("inline").inc()
                self._published.append(outbox_id)
                return True
        OUTBOX_PUBLISH_FAILURES.labels("inline").inc()
        try:
            await self.pool.execute(_MAKE_DUE, outbox_id)
        except (
            *DB_UNAVAILABLE,
            asyncpg.PostgresError,
        ) as exc:  # it becomes due after the grace anyway
            logger.warning("could not mark outbox row due: %s", type(exc).__name__)
        self._wake.set()
        return False

    def _log_inline_failure(self, exc: Exception) -> None:
        # Under a broker outage every send fails here: one line per few seconds is enough
        # (the counter has the exact number), and logging is not free on the hot path.
        self._inline_failures += 1
        now = time.monotonic()
        if now - self._last_failure_log >= 5.0:
            logger.warning(
                "inline publish failed %d time(s) (last: %s); the relay will publish",
                self._inline_failures,
                str(exc) or type(exc).__name__,
            )
            self._inline_failures = 0
            self._last_failure_log = now

    async def _publish(self, message: OutboxMessage) -> None:
        topology = self.publisher.topology
        if topology is None:
            raise PublishError("publisher is not connected")
        await self.publisher.publish(
            topology.work_exchange,
            routing_key=message.routing_key,
            body=message.body,
            message_id=message.message_id,
            correlation_id=message.correlation_id,
            priority=message.priority,
            headers={"x-correlation-id": message.correlation_id or ""},
        )

    # --- background tasks -----------------------------------------------------------------

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._relay_loop(), name="outbox-relay"),
            asyncio.create_task(self._flush_loop(), name="outbox-flush"),
            asyncio.create_task(self._housekeeping_loop(), name="outbox-housekeeping"),
        ]

    async def stop(self) -> None:
        """Stop the loops, then delete what was confirmed: a flush is never cut in half, so
        no confirmed row is left behind to be published twice."""
        self._stopping = True
        self._wake.set()
        for task in self._tasks:
            if task.get_name() != "outbox-flush":
                task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self.flush()

    def wake(self) -> None:
        self._wake.set()

    async def flush(self) -> None:
        """Delete rows whose inline publish was confirmed, in one statement."""
        if not self._published:
            return
        ids, self._published = self._published, []
        try:
            await self.pool.execute(_DELETE_IDS, ids)
        except (*DB_UNAVAILABLE, asyncpg.PostgresError) as exc:
            # Left in place they would be published again by the relay: harmless, but put
            # them back so the next flush tries first.
            logger.warning("outbox delete failed (%s); will retry", type(exc).__name__)
            self._published = ids + self._published

    async def _flush_loop(self) -> None:
        while not self._stopping:
            await asyncio.sleep(0.05)
            await self.flush()

    async def _relay_loop(self) -> None:
        backoff = 0.5
        while not self._stopping:
            try:
                if not broker_ready(self.publisher):
                    await self._connect()
                    backoff = 0.5
                handled = await self.relay_once()
                backoff = 0.5
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the relay must outlive any one failure
                logger.warning("outbox relay pass failed: %s", exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.settings.outbox_max_backoff_seconds)
                continue
            if handled < self.settings.outbox_batch_size:
                await self._idle()

    async def _idle(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self.settings.outbox_poll_interval_seconds)
        self._wake.clear()

    async def _connect(self) -> None:
        """(Re)connect a publisher whose first connection failed; robust after that."""
        if self.publisher.connection is not None and not self.publisher.connection.is_closed:
            # A robust connection that is reconnecting by itself: just wait for it.
            raise PublishError("broker connection is recovering")
        await self.publisher.close()
        try:
            await asyncio.wait_for(self.publisher.connect(), 10)
        except Exception as exc:
            await self.publisher.close()
            raise PublishError(f"cannot connect to the broker ({type(exc).__name__})") from exc
        logger.info("publisher connected; relaying the outbox")

    async def relay_once(self) -> int:
        """One batch: publish what is due, delete what went out, postpone what did not."""
        if not broker_ready(self.publisher):
            return 0
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(_DUE, self.settings.outbox_batch_size)
            if not rows:
                return 0
            statuses = StatusStore(conn)
            to_send: list[Any] = []
            done: list[int] = []
            postponed: list[tuple[int, str, float]] = []
            for row in rows:
                verdict = await self._verdict(statuses, row)
                if verdict is True:
                    to_send.append(row)
                elif verdict is False:
                    done.append(row["id"])
                else:
                    postponed.append((row["id"], verdict[0], verdict[1]))
            results = await asyncio.gather(*(self._relay_publish(row) for row in to_send))
            for row, error in zip(to_send, results, strict=True):
                if error is None:
                    done.append(row["id"])
                else:
                    postponed.append((row["id"], error[:500], self._delay(row["attempts"])))
            if done:
                await conn.execute(_DELETE_IDS, done)
            if postponed:
                await conn.executemany(_POSTPONE, postponed)
        if postponed:
            logger.warning("outbox relay: %d publishes failed; postponed", len(postponed))
        return len(rows)

    async def _verdict(self, statuses: StatusStore, row: Any) -> bool | tuple[str, float]:
        """Publish (True), drop (False), or postpone (why, seconds) one due row.

        A fresh message is published while its notification still waits for a worker; a
        reconciler's copy while the notification is open (the claim decides who sends); a
        scheduled notification is released only after its user's current preferences and
        quiet hours are read again.
        """
        status = row["status"]
        if row["kind"] == "reconcile":
            return status in OPEN
        if row["kind"] != "release":
            return status in (S.QUEUED, S.SCHEDULED)
        if status != S.SCHEDULED:
            return bool(status == S.QUEUED)
        if row["primary_status"] in (S.DELIVERED, S.CANCELLED):
            return await self._fallback_not_needed(statuses, row)
        if self.release_check is None:
            await statuses.transition(row["notification_id"], S.QUEUED, detail="released")
            return True
        message = NotificationMessage.from_bytes(bytes(row["payload"]))
        try:
            decision = await self.release_check(message)
        except Exception as exc:  # the user service may be down: try again shortly
            return (f"release check failed: {type(exc).__name__}", self._delay(row["attempts"]))
        if decision.status is S.SKIPPED:
            await statuses.transition(
                row["notification_id"], S.SKIPPED, reason=decision.code, detail=decision.reason
            )
            return False
        if decision.status is S.SCHEDULED and decision.release_at is not None:
            wait = (decision.release_at - datetime.now(UTC)).total_seconds()
            return ("still within quiet hours", max(1.0, wait))
        await statuses.transition(row["notification_id"], S.QUEUED, detail="released")
        return True

    async def _fallback_not_needed(self, statuses: StatusStore, row: Any) -> bool:
        """The send this row is the fallback of was delivered (or cancelled): never send it."""
        if row["primary_status"] == S.CANCELLED:
            await statuses.transition(
                row["notification_id"],
                S.CANCELLED,
                reason="cancelled",
                detail="the notification it was the fallback of was cancelled",
            )
        else:
            await statuses.transition(
                row["notification_id"],
                S.SKIPPED,
                reason="primary_delivered",
                detail="the notification it was the fallback of was delivered",
            )
        return False

    async def _relay_publish(self, row: Any) -> str | None:
        message = OutboxMessage(
            routing_key=row["routing_key"],
            body=bytes(row["payload"]),
            message_id=str(row["notification_id"]),
            correlation_id=row["correlation_id"],
            priority=row["priority"],
        )
        try:
            await self._publish(message)
        except PublishError as exc:
            OUTBOX_PUBLISH_FAILURES.labels("relay").inc()
            return str(exc)
        OUTBOX_PUBLISHED.labels("relay").inc()
        return None

    def _delay(self, attempts: int) -> float:
        step = min(self.settings.outbox_max_backoff_seconds, 0.5 * 2.0 ** min(attempts, 30))
        return step / 2 + random.uniform(0, step / 2)

    async def _housekeeping_loop(self) -> None:
        while True:
            try:
                OUTBOX_BACKLOG.set(await self.pool.fetchval(_COUNT))
                if self._purge_expired is not None:
                    await self._purge_expired()
            except (*DB_UNAVAILABLE, asyncpg.PostgresError) as exc:
                logger.warning("outbox housekeeping failed: %s", type(exc).__name__)
            await asyncio.sleep(60)
