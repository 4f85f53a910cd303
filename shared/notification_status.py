"""The notification status table, owned by the gateway and updated by the workers.

Transitions are monotonic: `transition()` moves a row only from the states listed in
`ALLOWED_FROM`, in one statement, so a late or replayed update can never move a notification
backwards (a stale `processing` never overwrites `delivered`). The history gets one row per
(status, attempt), enforced by a unique index, so a redelivered message does not duplicate it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol, TypedDict, Unpack

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


class DeviceStatus(StrEnum):
    """One push device's outcome. What makes a retry send only to the devices that have not
    accepted yet: `accepted` and `rejected` devices are settled, `pending` ones are tried again."""

    ACCEPTED = "accepted"
    REJECTED = "rejected"
    """Permanently refused (dead token, bad request): never tried again."""
    PENDING = "pending"
    """A transient failure: the next attempt tries this device again."""


@dataclass(frozen=True)
class DeviceRecord:
    status: DeviceStatus
    provider_message_id: str | None = None

    @property
    def settled(self) -> bool:
        """Accepted or refused for good: no later attempt sends to this device again."""
        return self.status is not DeviceStatus.PENDING


@dataclass(frozen=True)
class DeviceResult:
    """One device's result of one round, as recorded."""

    token: str
    status: DeviceStatus
    provider_message_id: str | None = None
    error: str | None = None


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
trips) is needed around it."""

_CURRENT_SQL = f"SELECT status FROM {SCHEMA}.notification_statuses WHERE id = $1"

_DEVICE_RESULTS_SQL = f"""
    SELECT device_token, status, provider_message_id
      FROM {SCHEMA}.notification_device_results
     WHERE notification_id = $1
"""

# One static statement for any number of devices (arrays unnested), so asyncpg's prepared
# statement cache always hits; an `accepted` row is never downgraded.
_RECORD_DEVICE_RESULTS_SQL = f"""
    INSERT INTO {SCHEMA}.notification_device_results AS d
           (notification_id, device_token, status, provider_message_id, error)
    SELECT $1, t.token, t.status, t.name, t.error
      FROM unnest($2::text[], $3::varchar[], $4::text[], $5::text[])
           AS t(token, status, name, error)
    ON CONFLICT (notification_id, device_token) DO UPDATE
       SET status = EXCLUDED.status,
           provider_message_id = EXCLUDED.provider_message_id,
           error = EXCLUDED.error,
           updated_at = now()
     WHERE d.status <> 'accepted'
"""


class TransitionOptions(TypedDict, total=False):
    """What a transition may carry besides its target."""

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


class Executor(Protocol):
    """An asyncpg pool (each statement its own transaction) or connection (inside the
    caller's transaction, e.g. the outbox relay's)."""

    async def fetchval(self, query: str, *args: Any) -> Any: ...

    async def fetch(self, query: str, *args: Any) -> list[Any]: ...

    async def execute(self, query: str, *args: Any) -> str: ...


class StatusStore:
    """Every write to a notification's status, history and device results goes through here:
    one statement each, over a plain asyncpg pool or a connection in a transaction."""

    def __init__(self, db: Executor) -> None:
        self.db = db

    def on(self, conn: Executor) -> StatusStore:
        """The same store inside the caller's transaction."""
        return StatusStore(conn)

    async def transition(
        self,
        notification_id: uuid.UUID,
        to_status: NotificationStatus,
        **options: Unpack[TransitionOptions],
    ) -> TransitionResult:
        args = _transition_args(notification_id, to_status, options)
        applied = await self.db.fetchval(_TRANSITION_SQL, *args)
        if applied is not None:
            return _result(applied, None)
        return _result(None, await self.db.fetchval(_CURRENT_SQL, notification_id))

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
        value = await self.db.fetchval(_CURRENT_SQL, notification_id)
        return NotificationStatus(value) if value is not None else None

    # --- push: per-device results ---------------------------------------------------------

    async def device_results(self, notification_id: uuid.UUID) -> dict[str, DeviceRecord]:
        """Every device token already tried for this notification, with its last result."""
        rows = await self.db.fetch(_DEVICE_RESULTS_SQL, notification_id)
        return {r[0]: DeviceRecord(DeviceStatus(r[1]), r[2]) for r in rows}

    async def record_device_results(
        self, notification_id: uuid.UUID, results: Sequence[DeviceResult]
    ) -> None:
        """This round's results; an `accepted` device is never downgraded."""
        if not results:
            return
        await self.db.execute(
            _RECORD_DEVICE_RESULTS_SQL,
            notification_id,
            [r.token for r in results],
            [r.status.value for r in results],
            [r.provider_message_id for r in results],
            [r.error for r in results],
        )
