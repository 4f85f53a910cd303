"""The notification status table, owned by the gateway and updated by the workers.

Transitions are monotonic: `transition()` moves a row only from the states listed in
`ALLOWED_FROM`, in one statement, so a late or replayed update can never move a notification
backwards (a stale `processing` never overwrites `delivered`). The history gets one row per
(status, attempt, generation), enforced by a unique index, so a redelivered message does not
duplicate it.

Workers never move a row with a plain transition. They **claim** it (`claim`): one statement
for a whole batch that takes only rows waiting for a worker (`queued`, `scheduled`,
`retrying`, or `processing` whose lease expired), for a newer attempt than the row has seen,
and gives each claim a fencing token and a lease. Every later write of that attempt (`finish`:
delivered, retrying, failed, skipped, expired; push device results; lease extensions) is
conditional on the token, so a copy of a message that lost the claim can never send or record
anything. A claim of the same attempt again (a crash, a handler error) counts in
`attempt_claims`; past the limit the claim itself marks the row `failed` (`handler_error`)
instead of handing it out, so a message that kills its worker cannot loop forever.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol, TypedDict, Unpack

from opentelemetry.trace import Span
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
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
from shared.tracing import Attributes, status_write_spans

SCHEMA = "api_gateway"


class NotificationStatus(StrEnum):
    QUEUED = "queued"
    SCHEDULED = "scheduled"
    PROCESSING = "processing"
    RETRYING = "retrying"
    DELIVERED = "delivered"
    FAILED = "failed"
    SKIPPED = "skipped"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    """Cancelled through the API while `scheduled` or `queued`: never sent."""


TERMINAL = frozenset(
    {
        NotificationStatus.DELIVERED,
        NotificationStatus.FAILED,
        NotificationStatus.SKIPPED,
        NotificationStatus.EXPIRED,
        NotificationStatus.CANCELLED,
    }
)
OPEN = frozenset(set(NotificationStatus) - TERMINAL)
"""Waiting for or in the hands of a worker: what the reconciler watches."""

S = NotificationStatus
ALLOWED_FROM: dict[NotificationStatus, frozenset[NotificationStatus]] = {
    S.QUEUED: frozenset({S.SCHEDULED}),
    S.PROCESSING: frozenset(),  # only through `claim`
    S.RETRYING: frozenset({S.PROCESSING}),
    S.DELIVERED: frozenset({S.QUEUED, S.SCHEDULED, S.PROCESSING, S.RETRYING}),
    S.FAILED: frozenset({S.QUEUED, S.SCHEDULED, S.PROCESSING, S.RETRYING}),
    S.SKIPPED: frozenset({S.QUEUED, S.SCHEDULED, S.PROCESSING, S.RETRYING}),
    S.EXPIRED: frozenset({S.QUEUED, S.SCHEDULED, S.PROCESSING, S.RETRYING}),
    # Only before a worker holds it: a claimed notification may already be at the provider.
    S.CANCELLED: frozenset({S.QUEUED, S.SCHEDULED}),
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
    # The current claim of a worker (see the module docstring) and when it lapses.
    Column("claim_token", UUID(as_uuid=True), nullable=True),
    Column("lease_until", DateTime(timezone=True), nullable=True),
    # Claims of the current attempt; more than one means a crash or a handler error.
    Column("attempt_claims", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", DateTime(timezone=True), nullable=True),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    # The message as accepted (attempt 1), so the reconciler can enqueue it again.
    Column("payload", LargeBinary, nullable=True),
    # The notifications one send made for several channels (`channels`); null otherwise.
    Column("group_id", UUID(as_uuid=True), nullable=True),
    # A push with a fallback: the push's `fell_back_to` is the other channel's row, whose
    # `fallback_of` points back; the relay releases that row only if the push was not delivered.
    Column("fallback_of", UUID(as_uuid=True), nullable=True),
    Column("fell_back_to", UUID(as_uuid=True), nullable=True),
    # The topic send (`api_gateway.broadcasts`) that made it.
    Column("broadcast_id", UUID(as_uuid=True), nullable=True),
    Index("ix_notification_statuses_request_id", "api_key_id", "request_id"),
    Index("ix_notification_statuses_user_created", "user_id", "created_at"),
    Index("ix_notification_statuses_created", "created_at"),
    Index(
        "ix_notification_statuses_open",
        "updated_at",
        postgresql_where=text("status IN ('queued', 'scheduled', 'processing', 'retrying')"),
    ),
    Index(
        "ix_notification_statuses_group",
        "api_key_id",
        "group_id",
        postgresql_where=text("group_id IS NOT NULL"),
    ),
    Index(
        "ix_notification_statuses_waiting_fallback",
        "fallback_of",
        postgresql_where=text("fallback_of IS NOT NULL AND status = 'scheduled'"),
    ),
    Index(
        "ix_notification_statuses_broadcast",
        "broadcast_id",
        postgresql_where=text("broadcast_id IS NOT NULL"),
    ),
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


class ClaimOutcome(StrEnum):
    CLAIMED = "claimed"
    """This worker holds the row for the attempt: send it."""
    LOST = "lost"
    """Another copy holds it, it is finished, or the attempt is older than one seen: do not send."""
    UNKNOWN = "unknown"
    """No such notification."""
    EXPIRED = "expired"
    """Past its `expires_at`: the claim marked it `expired`; do not send."""
    POISON = "poison"
    """Claimed too often for one attempt: the claim marked it `failed` (`handler_error`)."""


@dataclass(frozen=True)
class Claim:
    notification_id: uuid.UUID
    outcome: ClaimOutcome
    status: NotificationStatus | None
    """The row's status after the claim (`processing` when claimed)."""
    token: uuid.UUID | None = None
    attempt: int = 0
    created_at: datetime | None = None
    """When the notification was accepted (the database's clock): the retry budget's start."""
    expires_at: datetime | None = None
    db_now: datetime | None = None
    """The database's clock at the claim, so workers never compare against their own."""
    held_for_seconds: float | None = None
    """A lost claim whose row another claim holds: how long that claim's lease still runs.
    Its holder may have crashed, so this copy is the one that must take over when it lapses."""


@dataclass(frozen=True)
class Finish:
    """How a claimed attempt ended, written by `finish` only if the claim still holds."""

    notification_id: uuid.UUID
    token: uuid.UUID
    status: NotificationStatus
    reason: str | None = None
    """Why, in a word (`opted_out`, `permanent_failure`, `handler_error`, ...)."""
    error: str | None = None
    provider_id: str | None = None
    detail: str | None = None
    retry_in_ms: int = 0
    """For `retrying`: when the next attempt is due (`next_attempt_at`)."""


_TRANSITION_SQL = f"""
    WITH params AS (
        SELECT CAST($2 AS varchar) AS to_status,
               CAST($3 AS integer) AS attempt,
               CAST($4 AS text) AS error,
               CAST($5 AS text) AS provider_id,
               CAST($6 AS text) AS detail,
               CAST($7 AS integer) AS bump,
               CAST($8 AS varchar[]) AS allowed_from,
               CAST($9 AS text) AS reason
    ), upd AS (
        UPDATE {SCHEMA}.notification_statuses AS n
           SET status = p.to_status,
               status_reason = COALESCE(p.reason, n.status_reason),
               attempts = CASE WHEN p.bump = 1 THEN 0 ELSE GREATEST(n.attempts, p.attempt) END,
               attempt_claims = CASE WHEN p.bump = 1 THEN 0 ELSE n.attempt_claims END,
               last_error = CASE WHEN p.to_status = 'delivered' THEN n.last_error
                                 ELSE COALESCE(p.error, n.last_error) END,
               provider_message_id = COALESCE(p.provider_id, n.provider_message_id),
               updated_at = now(),
               delivered_at = CASE WHEN p.to_status = 'delivered' THEN now()
                                   ELSE n.delivered_at END,
               claim_token = NULL,
               lease_until = NULL,
               next_attempt_at = NULL,
               generation = n.generation + p.bump
          FROM params AS p
         WHERE n.id = $1
           AND n.status = ANY(p.allowed_from)
     RETURNING n.id, n.status, n.generation, n.attempts, p.detail
    ), hist AS (
        INSERT INTO {SCHEMA}.notification_status_history
               (notification_id, status, attempt, generation, detail)
        SELECT id, status, attempts, generation, detail FROM upd
        ON CONFLICT ON CONSTRAINT uq_history_once DO NOTHING
    )
    SELECT status FROM upd
"""
"""One statement, atomic on its own: no explicit transaction (and no BEGIN/COMMIT round
trips) is needed around it."""

_CURRENT_SQL = f"SELECT status FROM {SCHEMA}.notification_statuses WHERE id = $1"

_CLAIM_SQL = f"""
    WITH input AS (
        SELECT t.id, t.attempt FROM unnest($1::uuid[], $2::int[]) AS t(id, attempt)
    ), upd AS (
        UPDATE {SCHEMA}.notification_statuses AS n
           SET status = CASE
                   WHEN n.expires_at <= now() THEN 'expired'
                   WHEN i.attempt = n.attempts AND n.attempt_claims >= $5 THEN 'failed'
                   ELSE 'processing' END,
               status_reason = CASE
                   WHEN n.expires_at <= now() THEN 'expired'
                   WHEN i.attempt = n.attempts AND n.attempt_claims >= $5 THEN 'handler_error'
                   ELSE n.status_reason END,
               last_error = CASE
                   WHEN i.attempt = n.attempts AND n.attempt_claims >= $5
                   THEN 'claimed ' || n.attempt_claims || ' times without an outcome'
                   ELSE n.last_error END,
               attempts = i.attempt,
               attempt_claims = CASE WHEN i.attempt > n.attempts THEN 1
                                     ELSE n.attempt_claims + 1 END,
               claim_token = $3,
               lease_until = now() + make_interval(secs => $4),
               next_attempt_at = NULL,
               updated_at = now()
          FROM input AS i
         WHERE n.id = i.id
           AND ((n.status IN ('queued', 'scheduled', 'retrying') AND i.attempt > n.attempts)
             OR (n.status = 'processing' AND n.lease_until < now()
                 AND i.attempt >= n.attempts))
     RETURNING n.id, n.status, n.attempts, n.generation, n.created_at, n.expires_at,
               n.status_reason
    ), hist AS (
        INSERT INTO {SCHEMA}.notification_status_history
               (notification_id, status, attempt, generation, detail)
        SELECT id, status, attempts, generation,
               CASE status WHEN 'processing' THEN 'attempt ' || attempts
                           ELSE status_reason END
          FROM upd
        ON CONFLICT ON CONSTRAINT uq_history_once DO NOTHING
    )
    SELECT id, status, attempts, created_at, expires_at, now() AS db_now FROM upd
"""
"""$1 ids, $2 attempts, $3 the fencing token, $4 lease seconds, $5 the claim limit per attempt.
The WHERE is re-checked on the newest row version when two claims race, so exactly one wins."""

_CURRENT_MANY_SQL = f"""
    SELECT id, status,
           CASE WHEN status = 'processing' AND lease_until > now()
                THEN EXTRACT(EPOCH FROM lease_until - now())::float8 END AS lease_left
      FROM {SCHEMA}.notification_statuses WHERE id = ANY($1::uuid[])
"""
"""For the ids a claim did not take: their status, and how long a live claim still holds them."""

_FINISH_SQL = f"""
    WITH o AS (
        SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::varchar[], $4::text[], $5::text[],
                             $6::text[], $7::text[], $8::int[])
               AS t(id, token, status, reason, error, provider_id, detail, retry_in_ms)
    ), upd AS (
        UPDATE {SCHEMA}.notification_statuses AS n
           SET status = o.status,
               status_reason = o.reason,
               last_error = CASE WHEN o.status = 'delivered' THEN n.last_error
                                 ELSE COALESCE(o.error, n.last_error) END,
               provider_message_id = COALESCE(o.provider_id, n.provider_message_id),
               delivered_at = CASE WHEN o.status = 'delivered' THEN now()
                                   ELSE n.delivered_at END,
               next_attempt_at = CASE WHEN o.status = 'retrying'
                                      THEN now() + make_interval(secs => o.retry_in_ms / 1000.0)
                                 END,
               claim_token = NULL,
               lease_until = NULL,
               updated_at = now()
          FROM o
         WHERE n.id = o.id AND n.claim_token = o.token AND n.status = 'processing'
     RETURNING n.id, n.status, n.attempts, n.generation, o.detail
    ), hist AS (
        INSERT INTO {SCHEMA}.notification_status_history
               (notification_id, status, attempt, generation, detail)
        SELECT id, status, attempts, generation, detail FROM upd
        ON CONFLICT ON CONSTRAINT uq_history_once DO NOTHING
    )
    SELECT id FROM upd
"""

_EXTEND_SQL = f"""
    UPDATE {SCHEMA}.notification_statuses AS n
       SET lease_until = now() + make_interval(secs => $3)
      FROM unnest($1::uuid[], $2::uuid[]) AS t(id, token)
     WHERE n.id = t.id AND n.claim_token = t.token AND n.status = 'processing'
"""

_RELEASE_SQL = f"""
    UPDATE {SCHEMA}.notification_statuses
       SET lease_until = now(),
           attempt_claims = CASE WHEN $3 THEN attempt_claims
                                 ELSE GREATEST(attempt_claims - 1, 0) END
     WHERE id = $1 AND claim_token = $2 AND status = 'processing'
"""
"""Give a claim back at once so a redelivery can take it; `$3` says whether the attempt failed
in our code (it counts toward the claim limit) or in a dependency (it does not)."""

_DEVICE_RESULTS_SQL = f"""
    SELECT device_token, status, provider_message_id
      FROM {SCHEMA}.notification_device_results
     WHERE notification_id = $1
"""

# One static statement for any number of devices (arrays unnested), so asyncpg's prepared
# statement cache always hits; an `accepted` row is never downgraded; nothing is written
# unless the claim ($6) still holds.
_RECORD_DEVICE_RESULTS_SQL = f"""
    INSERT INTO {SCHEMA}.notification_device_results AS d
           (notification_id, device_token, status, provider_message_id, error)
    SELECT $1, t.token, t.status, t.name, t.error
      FROM unnest($2::text[], $3::varchar[], $4::text[], $5::text[])
           AS t(token, status, name, error)
     WHERE EXISTS (SELECT 1 FROM {SCHEMA}.notification_statuses s
                    WHERE s.id = $1 AND s.claim_token = $6 AND s.status = 'processing')
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
    reason: str | None
    provider_id: str | None
    allowed_from: frozenset[NotificationStatus] | None
    bump_generation: bool
    """A DLQ replay: a new run whose history rows must not collide with the first run's."""


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
        [s.value for s in allowed],
        options.get("reason"),
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
        """Move one notification outside a worker's claim (a release, a callback, a replay)."""
        args = _transition_args(notification_id, to_status, options)
        with status_write_spans(
            "transition",
            attributes={
                "notification.id": str(notification_id),
                "notification.status": to_status.value,
            },
        ):
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

    # --- a worker's claims ------------------------------------------------------------------

    async def claim(
        self,
        attempts: Sequence[tuple[uuid.UUID, int]],
        *,
        lease_seconds: float,
        max_claims: int,
        spans: Mapping[uuid.UUID, Span] | None = None,
    ) -> dict[uuid.UUID, Claim]:
        """Claim (notification id, attempt) pairs in one statement; one outcome per id.

        Give each id once (the highest attempt in hand): the copies are duplicates anyway.
        `spans` (each notification's span) get a child span for the statement each.
        """
        token = uuid.uuid4()
        ids = [a[0] for a in attempts]
        parents: list[tuple[Span, Attributes]] | None = (
            [
                (spans[nid], {"notification.id": str(nid), "notification.attempt": attempt})
                for nid, attempt in attempts
                if nid in spans
            ]
            if spans
            else None
        )
        with status_write_spans("claim", parents):
            rows = await self.db.fetch(
                _CLAIM_SQL, ids, [a[1] for a in attempts], token, lease_seconds, max_claims
            )
        claims: dict[uuid.UUID, Claim] = {}
        for row in rows:
            status = NotificationStatus(row["status"])
            outcome = {
                S.PROCESSING: ClaimOutcome.CLAIMED,
                S.EXPIRED: ClaimOutcome.EXPIRED,
                S.FAILED: ClaimOutcome.POISON,
            }[status]
            claims[row["id"]] = Claim(
                row["id"],
                outcome,
                status,
                token=token if outcome is ClaimOutcome.CLAIMED else None,
                attempt=row["attempts"],
                created_at=row["created_at"],
                expires_at=row["expires_at"],
                db_now=row["db_now"],
            )
        missing = [i for i in ids if i not in claims]
        if missing:
            found = {r["id"]: r for r in await self.db.fetch(_CURRENT_MANY_SQL, missing)}
            for notification_id in missing:
                current = found.get(notification_id)
                claims[notification_id] = Claim(
                    notification_id,
                    ClaimOutcome.LOST if current is not None else ClaimOutcome.UNKNOWN,
                    NotificationStatus(current["status"]) if current is not None else None,
                    held_for_seconds=current["lease_left"] if current is not None else None,
                )
        return claims

    async def finish(
        self, outcomes: Sequence[Finish], *, spans: Mapping[uuid.UUID, Span] | None = None
    ) -> set[uuid.UUID]:
        """Record how claimed attempts ended, in one statement; the ids whose claim held.

        `spans` (each notification's span) get a child span for the statement each."""
        if not outcomes:
            return set()
        parents: list[tuple[Span, Attributes]] | None = (
            [
                (
                    spans[o.notification_id],
                    {
                        "notification.id": str(o.notification_id),
                        "notification.status": o.status.value,
                    },
                )
                for o in outcomes
                if o.notification_id in spans
            ]
            if spans
            else None
        )
        with status_write_spans("finish", parents):
            rows = await self.db.fetch(
                _FINISH_SQL,
                [o.notification_id for o in outcomes],
                [o.token for o in outcomes],
                [o.status.value for o in outcomes],
                [o.reason for o in outcomes],
                [o.error[:2000] if o.error else None for o in outcomes],
                [o.provider_id for o in outcomes],
                [o.detail for o in outcomes],
                [o.retry_in_ms for o in outcomes],
            )
        return {r["id"] for r in rows}

    async def extend_leases(
        self, held: Sequence[tuple[uuid.UUID, uuid.UUID]], lease_seconds: float
    ) -> None:
        """Keep (id, token) claims alive while their sends run."""
        if held:
            await self.db.execute(
                _EXTEND_SQL, [h[0] for h in held], [h[1] for h in held], lease_seconds
            )

    async def release(
        self, notification_id: uuid.UUID, token: uuid.UUID, *, handler_error: bool
    ) -> None:
        """Give a claim back so the redelivered message can take it at once."""
        await self.db.execute(_RELEASE_SQL, notification_id, token, handler_error)

    # --- push: per-device results ---------------------------------------------------------

    async def device_results(self, notification_id: uuid.UUID) -> dict[str, DeviceRecord]:
        """Every device token already tried for this notification, with its last result."""
        rows = await self.db.fetch(_DEVICE_RESULTS_SQL, notification_id)
        return {r[0]: DeviceRecord(DeviceStatus(r[1]), r[2]) for r in rows}

    async def record_device_results(
        self, notification_id: uuid.UUID, token: uuid.UUID, results: Sequence[DeviceResult]
    ) -> None:
        """This round's results, if the claim `token` still holds; an `accepted` device is
        never downgraded."""
        if not results:
            return
        await self.db.execute(
            _RECORD_DEVICE_RESULTS_SQL,
            notification_id,
            [r.token for r in results],
            [r.status.value for r in results],
            [r.provider_message_id for r in results],
            [r.error for r in results],
            token,
        )
