"""The notification status table, owned by the gateway and updated by the workers.

Transitions are monotonic: `transition()` moves a row only from the states listed in
`ALLOWED_FROM`, in one statement, so a late or replayed update can never move a notification
backwards (a stale `processing` never overwrites `delivered`). The history gets one row per
(status, attempt), enforced by a unique index, so a redelivered message does not duplicate it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import TypedDict, Unpack

import asyncpg
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.db import NAMING_CONVENTION

SCHEMA = "api_gateway"


class NotificationStatus(StrEnum):
    QUEUED = "queued"
    SCHEDULED = "scheduled"
    PROCESSING = "processing"
    RETRYING = "retrying"
    DELIVERED = "delivered"
    FAILED = "failed"
    SKIPPED = "skipped"


TERMINAL = frozenset(
    {NotificationStatus.DELIVERED, NotificationStatus.FAILED, NotificationStatus.SKIPPED}
)

S = NotificationStatus
ALLOWED_FROM: dict[NotificationStatus, frozenset[NotificationStatus]] = {
    S.QUEUED: frozenset({S.SCHEDULED}),
    S.PROCESSING: frozenset({S.QUEUED, S.SCHEDULED, S.RETRYING, S.PROCESSING}),
    S.RETRYING: frozenset({S.QUEUED, S.PROCESSING, S.RETRYING}),
    S.DELIVERED: frozenset({S.QUEUED, S.SCHEDULED, S.PROCESSING, S.RETRYING}),
    S.FAILED: frozenset({S.QUEUED, S.SCHEDULED, S.PROCESSING, S.RETRYING}),
    S.SKIPPED: frozenset(),
}
"""For each target status, the statuses it may be reached from. Terminal states have no exit,
except the explicit replay of a failed notification (`reopen_failed`)."""

metadata = MetaData(schema=SCHEMA, naming_convention=NAMING_CONVENTION)

notification_statuses = Table(
    "notification_statuses",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("api_key_id", UUID(as_uuid=True), nullable=True),
    Column("request_id", String(255), nullable=True),
    Column("notification_type", String(16), nullable=False),
    Column("user_id", UUID(as_uuid=True), nullable=False),
    Column("template_code", String(128), nullable=False),
    Column("template_version", Integer, nullable=True),
    Column("locale", String(35), nullable=True),
    Column("priority", Integer, nullable=False, server_default="5"),
    Column("status", String(16), nullable=False),
    Column("status_reason", Text, nullable=True),
    Column("attempts", Integer, nullable=False, server_default="0"),
    # Bumped by each replay from the dead-letter queue, so a replayed run's history rows are
    # new rows rather than duplicates of the first run's.
    Column("generation", Integer, nullable=False, server_default="0"),
    Column("last_error", Text, nullable=True),
    Column("provider_message_id", Text, nullable=True),
    Column("metadata", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    # The variables it was accepted with (the console renders the content from them).
    Column("variables", JSONB, nullable=True),
    Column("scheduled_for", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("delivered_at", DateTime(timezone=True), nullable=True),
    Index("ix_notification_statuses_request_id", "api_key_id", "request_id"),
    Index("ix_notification_statuses_user_created", "user_id", "created_at"),
    Index("ix_notification_statuses_created", "created_at"),
)

notification_status_history = Table(
    "notification_status_history",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("notification_id", UUID(as_uuid=True), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempt", Integer, nullable=False, server_default="0"),
    Column("generation", Integer, nullable=False, server_default="0"),
    Column("detail", Text, nullable=True),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("notification_id", "status", "attempt", "generation", name="uq_history_once"),
    Index("ix_history_notification", "notification_id", "at"),
)

notification_device_results = Table(
    "notification_device_results",
    metadata,
    Column("notification_id", UUID(as_uuid=True), primary_key=True),
    Column("device_token", Text, primary_key=True),
    Column("status", String(16), nullable=False),
    Column("provider_message_id", Text, nullable=True),
    Column("error", Text, nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)


@dataclass(frozen=True)
class TransitionResult:
    applied: bool
    status: NotificationStatus | None
    """The status after the call: the new one if applied, else the one found (None: no row)."""


_TRANSITION_SQL = f"""
    WITH params AS (
        SELECT CAST($2 AS varchar) AS to_status,
               CAST($3 AS integer) AS attempt,
               CAST($4 AS text) AS error,
               CAST($5 AS text) AS provider_id,
               CAST($6 AS text) AS detail,
               CAST($7 AS integer) AS bump,
               CAST($8 AS integer) AS stale_guard,
               CAST($9 AS varchar[]) AS allowed_from
    ), upd AS (
        UPDATE {SCHEMA}.notification_statuses AS n
           SET status = p.to_status,
               attempts = CASE WHEN p.bump = 1 THEN 0 ELSE GREATEST(n.attempts, p.attempt) END,
               last_error = CASE WHEN p.to_status = 'delivered' THEN n.last_error
                                 ELSE COALESCE(p.error, n.last_error) END,
               provider_message_id = COALESCE(p.provider_id, n.provider_message_id),
               updated_at = now(),
               delivered_at = CASE WHEN p.to_status = 'delivered' THEN now()
                                   ELSE n.delivered_at END,
               generation = n.generation + p.bump
          FROM params AS p
         WHERE n.id = $1
           AND n.status = ANY(p.allowed_from)
           AND (p.stale_guard = 0 OR n.attempts <= p.attempt)
     RETURNING n.id, n.status, n.generation, p.attempt, p.detail
    ), hist AS (
        INSERT INTO {SCHEMA}.notification_status_history
               (notification_id, status, attempt, generation, detail)
        SELECT id, status, attempt, generation, detail FROM upd
        ON CONFLICT ON CONSTRAINT uq_history_once DO NOTHING
    )
    SELECT status FROM upd
"""
"""One statement, atomic on its own: no explicit transaction (and no BEGIN/COMMIT round
trips) is needed around it. Positional `$n` parameters, so the same text runs on a raw asyncpg
pool (the workers' hot path) and through SQLAlchemy's `exec_driver_sql` (the gateway)."""

_CURRENT_SQL = f"SELECT status FROM {SCHEMA}.notification_statuses WHERE id = $1"


class TransitionOptions(TypedDict, total=False):
    """What a transition may carry besides its target; one definition for both entry points."""

    attempt: int
    detail: str | None
    error: str | None
    provider_id: str | None
    allowed_from: frozenset[NotificationStatus] | None
    bump_generation: bool
    """A DLQ replay: a new run whose history rows must not collide with the first run's."""
    stale_guard: bool
    """Refuse a message whose attempt is older than one already seen, so an old redelivery
    that races its own retry is dropped instead of sending twice."""


def _transition_args(
    notification_id: uuid.UUID, to_status: NotificationStatus, options: TransitionOptions
) -> tuple[object, ...]:
    allowed = options.get("allowed_from")
    if allowed is None:
        allowed = ALLOWED_FROM[to_status]
    error = options.get("error")
    return (
        notification_id,
        to_status.value,
        options.get("attempt", 0),
        error[:2000] if error else None,
        options.get("provider_id"),
        options.get("detail"),
        1 if options.get("bump_generation") else 0,
        1 if options.get("stale_guard") else 0,
        [s.value for s in allowed],
    )


def _result(applied_status: str | None, current: str | None) -> TransitionResult:
    if applied_status is not None:
        return TransitionResult(applied=True, status=NotificationStatus(applied_status))
    return TransitionResult(
        applied=False, status=NotificationStatus(current) if current is not None else None
    )


async def transition(
    conn: AsyncConnection,
    notification_id: uuid.UUID,
    to_status: NotificationStatus,
    **options: Unpack[TransitionOptions],
) -> TransitionResult:
    """Move one notification to `to_status` if the move is allowed; report what happened.

    For callers already inside a SQLAlchemy transaction (the gateway's callback and relay).
    """
    args = _transition_args(notification_id, to_status, options)
    applied = (await conn.exec_driver_sql(_TRANSITION_SQL, args)).scalar()
    if applied is not None:
        return _result(applied, None)
    return _result(None, (await conn.exec_driver_sql(_CURRENT_SQL, (notification_id,))).scalar())


class StatusStore:
    """Status updates from a worker: one statement each over a plain asyncpg pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def transition(
        self,
        notification_id: uuid.UUID,
        to_status: NotificationStatus,
        **options: Unpack[TransitionOptions],
    ) -> TransitionResult:
        args = _transition_args(notification_id, to_status, options)
        applied = await self.pool.fetchval(_TRANSITION_SQL, *args)
        if applied is not None:
            return _result(applied, None)
        return _result(None, await self.pool.fetchval(_CURRENT_SQL, notification_id))

    async def reopen_failed(self, notification_id: uuid.UUID, detail: str) -> TransitionResult:
        """A DLQ replay: the one way out of `failed`, recorded in the history."""
        return await self.transition(
            notification_id,
            NotificationStatus.QUEUED,
            detail=detail,
            attempt=0,
            allowed_from=frozenset({NotificationStatus.FAILED}),
            bump_generation=True,
        )

    async def current(self, notification_id: uuid.UUID) -> NotificationStatus | None:
        value = await self.pool.fetchval(_CURRENT_SQL, notification_id)
        return NotificationStatus(value) if value is not None else None
