"""The reconciler: no notification stays unfinished because a message went missing.

A message can vanish while its notification waits: an operator purges a queue, a replay dies
between its status change and its publish, a worker crashes holding a claim, a delay queue is
deleted. Nothing else would ever look at such a row again. Every `reconcile_interval_seconds`,
one gateway at a time (a PostgreSQL advisory lock taken for the pass), the reconciler finds
open rows that have sat idle past a threshold, measured on the database's clock:

| reason | row | enqueued as |
|---|---|---|
| `lease_expired` | `processing` whose claim lapsed | the same attempt (the claim takes it over and counts it) |
| `retry_overdue` | `retrying` past its `next_attempt_at` | the next attempt |
| `queued_idle` | `queued` with no outbox row, idle for `reconcile_queued_after_seconds`, and only as many as the channel's queue is short of (below) | the next attempt |
| `schedule_lost` | `scheduled` past its time with no outbox row | a release (preferences read again) |
| `expired` | open past its `expires_at`, not held by a live claim | nothing: marked `expired` |

It also makes due the fallback of a send that ended undelivered (`failed`, `skipped`,
`expired`), so the fallback goes at once instead of at its deadline (`fallback_early`, counted
in `notifications_gateway_fallbacks_released_early_total`, not as a lost message).

It enqueues through the outbox, in the same transaction that picks the rows, so the relay
publishes and the workers' claim rules decide: a copy of a message that still exists is acked
as a duplicate, never sent twice. Each enqueued row's `updated_at` moves, so the same row is
enqueued again only after another full threshold.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from aiormq.exceptions import AMQPError
from prometheus_client import Counter

from services.api_gateway.settings import GatewaySettings
from shared.db import DB_UNAVAILABLE
from shared.messaging.message import NotificationMessage
from shared.messaging.publisher import Publisher

logger = logging.getLogger("api_gateway.reconciler")

RECONCILED = Counter(
    "notification_reconciled_total",
    "Unfinished notifications the reconciler enqueued again (or expired), by reason.",
    ["reason"],
)

FALLBACKS_RELEASED_EARLY = Counter(
    "notifications_gateway_fallbacks_released_early_total",
    "Fallbacks made due before their deadline because their send ended undelivered.",
)

LOCK_KEY = 0x6E6F7469_66726563  # "notifrec": one reconciler pass at a time, across gateways

# Both picks end alike: each picked row's `updated_at` moves, so it is picked again only after
# another full threshold.
_TOUCH = """
UPDATE api_gateway.notification_statuses n
   SET updated_at = now()
  FROM stuck
 WHERE n.id = stuck.id
RETURNING stuck.*
"""

_STUCK = (
    """
WITH stuck AS (
    SELECT s.id, s.status, s.attempts, s.priority, s.payload, s.notification_type,
           CASE
             WHEN s.status = 'processing' THEN 'lease_expired'
             WHEN s.status = 'retrying' THEN 'retry_overdue'
             ELSE 'schedule_lost'
           END AS reason
      FROM api_gateway.notification_statuses s
     WHERE s.status IN ('scheduled', 'processing', 'retrying')
       AND s.updated_at < now() - make_interval(secs => $1)
       AND s.payload IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM api_gateway.outbox o WHERE o.notification_id = s.id)
       AND CASE s.status
             WHEN 'processing' THEN s.lease_until < now() - make_interval(secs => $1)
             WHEN 'retrying' THEN s.next_attempt_at < now() - make_interval(secs => $1)
             ELSE s.scheduled_for < now() - make_interval(secs => $1)
           END
     ORDER BY s.updated_at
     LIMIT $2
       FOR UPDATE OF s SKIP LOCKED
)
"""
    + _TOUCH
)

_QUEUED_COUNTS = """
SELECT s.notification_type, count(*) AS queued
  FROM api_gateway.notification_statuses s
 WHERE s.status = 'queued'
   AND NOT EXISTS (SELECT 1 FROM api_gateway.outbox o WHERE o.notification_id = s.id)
 GROUP BY s.notification_type
"""

_QUEUED_IDLE = (
    """
WITH stuck AS (
    SELECT s.id, s.status, s.attempts, s.priority, s.payload, s.notification_type,
           'queued_idle' AS reason
      FROM api_gateway.notification_statuses s
     WHERE s.status = 'queued'
       AND s.notification_type = $1
       AND s.updated_at < now() - make_interval(secs => $2)
       AND s.payload IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM api_gateway.outbox o WHERE o.notification_id = s.id)
     ORDER BY s.updated_at
     LIMIT $3
       FOR UPDATE OF s SKIP LOCKED
)
"""
    + _TOUCH
)
"""At most $3 (the messages missing from the channel's queue) of its oldest idle `queued` rows."""

_EXPIRE = """
WITH gone AS (
    UPDATE api_gateway.notification_statuses s
       SET status = 'expired', status_reason = 'expired', claim_token = NULL,
           lease_until = NULL, next_attempt_at = NULL, updated_at = now()
     WHERE s.id IN (
         SELECT id FROM api_gateway.notification_statuses
          WHERE status IN ('queued', 'scheduled', 'processing', 'retrying')
            AND expires_at < now()
            AND (status <> 'processing' OR lease_until < now())
          LIMIT $1
            FOR UPDATE SKIP LOCKED)
    RETURNING s.id, s.attempts, s.generation
), hist AS (
    INSERT INTO api_gateway.notification_status_history
           (notification_id, status, attempt, generation, detail)
    SELECT id, 'expired', attempts, generation, 'expired before delivery' FROM gone
    ON CONFLICT ON CONSTRAINT uq_history_once DO NOTHING
)
SELECT count(*) FROM gone
"""

# A send that ended undelivered (failed, skipped: every token dead, an opt-out at delivery;
# expired) releases its fallback now instead of at the deadline.
_FALLBACK_EARLY = """
WITH early AS (
    SELECT o.id
      FROM api_gateway.notification_statuses f
      JOIN api_gateway.notification_statuses p ON p.id = f.fallback_of
      JOIN api_gateway.outbox o ON o.notification_id = f.id
     WHERE f.fallback_of IS NOT NULL AND f.status = 'scheduled'
       AND p.status IN ('failed', 'skipped', 'expired')
       AND o.available_at > now()
     LIMIT $1
       FOR UPDATE OF o SKIP LOCKED
)
UPDATE api_gateway.outbox o SET available_at = now() FROM early WHERE o.id = early.id
"""

_ENQUEUE = """
INSERT INTO api_gateway.outbox
       (notification_id, routing_key, payload, priority, correlation_id, kind, available_at)
SELECT t.notification_id, t.routing_key, t.payload, t.priority, t.correlation_id, t.kind, now()
  FROM unnest($1::uuid[], $2::text[], $3::bytea[], $4::int[], $5::text[], $6::text[])
       AS t(notification_id, routing_key, payload, priority, correlation_id, kind)
"""


ReadyMessages = Callable[[str], Awaitable[int | None]]
"""A channel's ready messages in its work queue (None: unknown, the broker is away)."""


def queue_depth_of(publisher: Publisher) -> ReadyMessages:
    """Ready messages of `<channel>.queue`, asked on a channel of its own (a passive declare
    that failed would close the publisher's confirming channel)."""

    async def ready(channel: str) -> int | None:
        connection = publisher.connection
        if connection is None or connection.is_closed:
            return None
        try:
            async with asyncio.timeout(5):
                amqp = await connection.channel()
                try:
                    queue = await amqp.declare_queue(f"{channel}.queue", passive=True)
                    return int(queue.declaration_result.message_count or 0)
                finally:
                    await amqp.close()
        except (AMQPError, OSError, TimeoutError, RuntimeError) as exc:
            logger.warning(
                "reconciler: depth of %s.queue unknown (%s)", channel, type(exc).__name__
            )
            return None

    return ready


class Reconciler:
    def __init__(
        self, settings: GatewaySettings, pool: asyncpg.Pool, ready_messages: ReadyMessages
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.ready_messages = ready_messages
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="reconciler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.reconcile_interval_seconds)
            try:
                await self.run_once()
            except (*DB_UNAVAILABLE, asyncpg.PostgresError) as exc:
                logger.warning("reconciler pass failed: %s", type(exc).__name__)

    async def run_once(self) -> dict[str, int]:
        """One pass; what it did by reason (empty if another gateway holds the lock)."""
        counts: dict[str, int] = {}
        async with self.pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", LOCK_KEY):
                return counts
            expired = await conn.fetchval(_EXPIRE, self.settings.reconcile_batch_size)
            if expired:
                counts["expired"] = expired
            early = await conn.execute(_FALLBACK_EARLY, self.settings.reconcile_batch_size)
            released = int(early.split()[-1])
            rows = list(
                await conn.fetch(
                    _STUCK,
                    self.settings.reconcile_margin_seconds,
                    self.settings.reconcile_batch_size,
                )
            )
            rows += await self._queued_without_a_message(conn)
            if rows:
                await conn.execute(_ENQUEUE, *_outbox_columns(rows))
            for row in rows:
                counts[row["reason"]] = counts.get(row["reason"], 0) + 1
        for reason, count in counts.items():
            RECONCILED.labels(reason).inc(count)
            logger.warning("reconciler: %d notifications %s", count, reason)
        if released:  # expected work, not a lost message: its own counter, no warning
            FALLBACKS_RELEASED_EARLY.inc(released)
            counts["fallback_early"] = released
        return counts

    async def _queued_without_a_message(self, conn: asyncpg.Connection) -> list[Any]:
        """`queued` rows whose message is gone, bounded by how many are missing.

        A `queued` notification's message waits in its channel's work queue, so when the queue
        holds fewer ready messages than there are such rows, the difference is missing (a
        purge, a deleted queue). Only that many of the oldest idle rows are enqueued again: a
        long backlog (a provider outage pausing the workers, say) never earns copies of
        messages that are still there. With the queue's depth unknown (broker down), none.
        """
        rows: list[Any] = []
        for row in await conn.fetch(_QUEUED_COUNTS):
            ready = await self.ready_messages(row["notification_type"])
            missing = row["queued"] - ready if ready is not None else 0
            if missing <= 0:
                continue
            limit = min(missing, self.settings.reconcile_batch_size)
            rows += await conn.fetch(
                _QUEUED_IDLE,
                row["notification_type"],
                self.settings.reconcile_queued_after_seconds,
                limit,
            )
        return rows


def _outbox_columns(rows: list[Any]) -> tuple[list[Any], ...]:
    """The rows as outbox columns: the accepted message with the attempt its reason calls for."""
    ids, keys, payloads, priorities, correlations, kinds = [], [], [], [], [], []
    for row in rows:
        message = NotificationMessage.from_bytes(bytes(row["payload"]))
        attempt = row["attempts"] if row["reason"] == "lease_expired" else row["attempts"] + 1
        payloads.append(message.model_copy(update={"attempt": max(1, attempt)}).to_bytes())
        ids.append(row["id"])
        keys.append(row["notification_type"])
        priorities.append(row["priority"])
        correlations.append(message.correlation_id)
        kinds.append("release" if row["reason"] == "schedule_lost" else "reconcile")
    return ids, keys, payloads, priorities, correlations, kinds
