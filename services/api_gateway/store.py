"""Notification rows as the gateway writes and reads them (raw SQL over asyncpg).

`accept` is the one statement of the send path that makes a notification exist: in a single
data-modifying CTE it completes the idempotency claim, inserts the status row and its first
history row, and inserts the outbox row with the message. One statement is one transaction and
one round trip; if the claim is no longer ours, nothing else is written.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from shared.errors import Conflict, NotFound, ValidationFailed
from shared.messaging.message import NotificationMessage
from shared.notification_status import NotificationStatus, StatusStore, TransitionResult


@dataclass(frozen=True)
class NewNotification:
    id: uuid.UUID
    api_key_id: uuid.UUID
    request_id: str | None
    notification_type: str
    user_id: uuid.UUID
    template_code: str
    template_version: int | None
    locale: str | None
    priority: int
    status: str
    status_reason: str | None
    metadata: dict[str, Any]
    scheduled_for: datetime | None
    detail: str
    expires_at: datetime | None = None
    ttl_seconds: int | None = None
    """Instead of `expires_at`: counted from acceptance, on the database's clock."""
    group_id: uuid.UUID | None = None
    fallback_of: uuid.UUID | None = None
    fell_back_to: uuid.UUID | None = None
    broadcast_id: uuid.UUID | None = None


@dataclass(frozen=True)
class OutboxEntry:
    routing_key: str
    payload: bytes
    correlation_id: str
    kind: str  # "publish" | "release"
    available_at: datetime | None
    """A release's time; a publish is due `grace_seconds` after acceptance (database clock)."""
    grace_seconds: float = 0.0


@dataclass(frozen=True)
class Accepted:
    """What the accept statement wrote; times as the database's clock gave them."""

    outbox_id: int | None
    created_at: str
    expires_at: str | None


@dataclass(frozen=True)
class AcceptedGroup:
    """What the group accept statement wrote: each notification's outbox row, if any."""

    outbox_ids: dict[uuid.UUID, int]
    created_at: str
    expires_at: str | None


@dataclass(frozen=True)
class CollapseWindow:
    key: str
    seconds: int


@dataclass(frozen=True)
class IdempotencyCompletion:
    key: str
    token: uuid.UUID
    status_code: int
    response: dict[str, Any]


def _clock(*, expires_at: str, ttl_seconds: str) -> str:
    """The CTEs every accept statement opens with: the database's time, read once, as a value
    and as the ISO text the stored response carries, and the expiry (given, or now + ttl)."""
    return f"""
WITH clock AS (
    SELECT now() AS at,
           to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"') AS at_text,
           COALESCE({expires_at}::timestamptz, now() + make_interval(secs => {ttl_seconds}::int))
               AS expires_at
), times AS (
    SELECT at, at_text, expires_at,
           to_char(expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')
               AS expires_text
      FROM clock
)"""


# Every time comes from the database's clock, read once (`now()` is the transaction's start):
# the row, its first history entry, the outbox row's due time, and the times in the stored
# idempotent response all agree, whatever the gateway's own clock says.
_ACCEPT = (
    _clock(expires_at="$20", ttl_seconds="$21")
    + """, {claim_cte}, ins AS (
    INSERT INTO api_gateway.notification_statuses
           (id, api_key_id, request_id, notification_type, user_id, template_code,
            template_version, locale, priority, status, status_reason, metadata, scheduled_for,
            created_at, updated_at, expires_at, payload)
    SELECT $1::uuid, $2::uuid, $3::text, $4::text, $5::uuid, $6::text, $7::int, $8::text,
           $9::int, $10::text, $11::text, $12::jsonb, $13::timestamptz, t.at, t.at,
           t.expires_at, $15::bytea
      FROM claim, times t
    RETURNING id, status, created_at
), hist AS (
    INSERT INTO api_gateway.notification_status_history (notification_id, status, detail, at)
    SELECT id, status, $14::text, created_at FROM ins
), ob AS (
    INSERT INTO api_gateway.outbox
           (notification_id, routing_key, payload, priority, correlation_id, kind, available_at)
    SELECT id, $16::text, $15::bytea, $9::int, $17::text, $18::text,
           COALESCE($19::timestamptz, now() + make_interval(secs => $22::float8))
      FROM ins
     WHERE $15::bytea IS NOT NULL
    RETURNING id
)
SELECT (SELECT count(*) FROM ins) AS inserted, (SELECT id FROM ob) AS outbox_id,
       t.at_text AS created_at, t.expires_text AS expires_at
  FROM times t
"""
)

_ACCEPT_PLAIN = _ACCEPT.format(claim_cte="claim AS (SELECT 1)")
_ACCEPT_CLAIMED = _ACCEPT.format(
    claim_cte="""claim AS (
    UPDATE api_gateway.idempotency_records
       SET state = 'completed', status_code = $23::int,
           response = jsonb_set(
               jsonb_set($24::jsonb, '{data,created_at}', to_jsonb(t.at_text)),
               '{data,expires_at}', COALESCE(to_jsonb(t.expires_text), 'null'::jsonb)),
           notification_id = $1::uuid
      FROM times t
     WHERE api_key_id = $2::uuid AND key = $25::text AND claim_token = $26::uuid
       AND state = 'pending'
    RETURNING 1
)"""
)

# Several notifications from one send (one per channel, or a push and its fallback): the same
# statement for N rows (arrays unnested), one static text whatever N is. The stored idempotent
# response gets the database's times at its top level, in each of its `notifications` and in
# its `fallback`.
_ACCEPT_GROUP = (
    _clock(expires_at="$22", ttl_seconds="$23")
    + """, {claim_cte}, input AS (
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::int[], $4::text[], $5::text[], $6::text[],
                         $7::timestamptz[], $8::text[], $9::bytea[], $10::text[],
                         $11::timestamptz[], $12::uuid[], $13::uuid[])
           AS t(id, notification_type, template_version, locale, status, status_reason,
                scheduled_for, detail, payload, kind, available_at, fallback_of, fell_back_to)
), ins AS (
    INSERT INTO api_gateway.notification_statuses
           (id, api_key_id, request_id, notification_type, user_id, template_code,
            template_version, locale, priority, status, status_reason, metadata, scheduled_for,
            created_at, updated_at, expires_at, payload, group_id, fallback_of, fell_back_to,
            broadcast_id)
    SELECT i.id, $14::uuid, $15::text, i.notification_type, $16::uuid, $17::text,
           i.template_version, i.locale, $18::int, i.status, i.status_reason, $19::jsonb,
           i.scheduled_for, t.at, t.at, t.expires_at, i.payload, $20::uuid, i.fallback_of,
           i.fell_back_to, $25::uuid
      FROM input i, claim, times t
    RETURNING id, status, created_at
), hist AS (
    INSERT INTO api_gateway.notification_status_history (notification_id, status, detail, at)
    SELECT ins.id, ins.status, i.detail, ins.created_at FROM ins JOIN input i ON i.id = ins.id
), ob AS (
    INSERT INTO api_gateway.outbox
           (notification_id, routing_key, payload, priority, correlation_id, kind, available_at)
    SELECT i.id, i.notification_type, i.payload, $18::int, $21::text, i.kind,
           COALESCE(i.available_at, now() + make_interval(secs => $24::float8))
      FROM ins JOIN input i ON i.id = ins.id
     WHERE i.payload IS NOT NULL
    RETURNING id, notification_id
)
SELECT (SELECT count(*) FROM ins) AS inserted,
       (SELECT array_agg(notification_id) FROM ob) AS outbox_notifications,
       (SELECT array_agg(id) FROM ob) AS outbox_ids,
       t.at_text AS created_at, t.expires_text AS expires_at
  FROM times t
"""
)

_TIMES_OF = """jsonb_build_object('created_at', t.at_text, 'expires_at', t.expires_text)"""
_ACCEPT_GROUP_PLAIN = _ACCEPT_GROUP.format(claim_cte="claim AS (SELECT 1)")
_ACCEPT_GROUP_CLAIMED = _ACCEPT_GROUP.format(
    claim_cte=f"""claim AS (
    UPDATE api_gateway.idempotency_records
       SET state = 'completed', status_code = $26::int,
           response = jsonb_set($27::jsonb, '{{data}}',
               ($27::jsonb -> 'data') || {_TIMES_OF}
               || CASE WHEN $27::jsonb -> 'data' ? 'notifications' THEN jsonb_build_object(
                      'notifications',
                      (SELECT jsonb_agg(e.item || {_TIMES_OF} ORDER BY e.n)
                         FROM jsonb_array_elements($27::jsonb -> 'data' -> 'notifications')
                              WITH ORDINALITY AS e(item, n)))
                  ELSE '{{}}'::jsonb END
               || CASE WHEN jsonb_typeof($27::jsonb -> 'data' -> 'fallback') = 'object'
                  THEN jsonb_build_object(
                      'fallback', ($27::jsonb -> 'data' -> 'fallback') || {_TIMES_OF})
                  ELSE '{{}}'::jsonb END),
           notification_id = ($1::uuid[])[1]
      FROM times t
     WHERE api_key_id = $14::uuid AND key = $28::text AND claim_token = $29::uuid
       AND state = 'pending'
    RETURNING 1
)"""
)

# Open the window, or find the one open: the upsert locks the row, so a concurrent send with
# the same key waits for this transaction and then sees its notification as the window's.
_COLLAPSE = """
INSERT INTO api_gateway.collapse_windows AS c
       (api_key_id, user_id, channel, collapse_key, notification_id, window_ends_at)
VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6::float8))
ON CONFLICT (api_key_id, user_id, channel, collapse_key) DO UPDATE
   SET notification_id = CASE WHEN c.window_ends_at <= now() THEN EXCLUDED.notification_id
                              ELSE c.notification_id END,
       window_ends_at = CASE WHEN c.window_ends_at <= now() THEN EXCLUDED.window_ends_at
                             ELSE c.window_ends_at END
RETURNING notification_id
"""

_PURGE_COLLAPSE_WINDOWS = """
DELETE FROM api_gateway.collapse_windows
 WHERE ctid = ANY(ARRAY(SELECT ctid FROM api_gateway.collapse_windows
                         WHERE window_ends_at < now() LIMIT $1))
"""

_STATUS_COLUMNS = """
    s.id, s.request_id, s.status, s.status_reason, s.notification_type, s.user_id,
    s.template_code, s.template_version, s.locale, s.priority, s.attempts, s.last_error,
    s.scheduled_for, s.next_attempt_at, s.expires_at, s.created_at, s.updated_at, s.delivered_at,
    s.group_id, s.fallback_of, s.fell_back_to
"""
_HISTORY = """
       COALESCE((SELECT jsonb_agg(jsonb_build_object('status', h.status, 'at', h.at,
                                                     'detail', h.detail, 'attempt', h.attempt)
                                   ORDER BY h.at, h.id)
                   FROM api_gateway.notification_status_history h
                  WHERE h.notification_id = s.id), '[]'::jsonb) AS history
"""

_BY_ID_OR_REQUEST = f"""
SELECT {_STATUS_COLUMNS}, {_HISTORY}
  FROM api_gateway.notification_statuses s
 WHERE s.api_key_id = $1 AND (s.id = $2::uuid OR s.request_id = $3::text)
 ORDER BY (s.id IS NOT DISTINCT FROM $2::uuid) DESC, s.created_at DESC
 LIMIT 1
"""

_GROUP = f"""
SELECT {_STATUS_COLUMNS}, {_HISTORY}
  FROM api_gateway.notification_statuses s
 WHERE s.api_key_id = $1 AND s.group_id = $2
 ORDER BY s.created_at, s.notification_type
"""

_REF_OF = """
SELECT s.id, s.status FROM api_gateway.notification_statuses s
 WHERE s.api_key_id = $1 AND (s.id = $2::uuid OR s.request_id = $3::text)
 ORDER BY (s.id IS NOT DISTINCT FROM $2::uuid) DESC, s.created_at DESC
 LIMIT 1
"""

_CHANNEL_OF = "SELECT notification_type FROM api_gateway.notification_statuses WHERE id = $1"
_PAYLOAD_OF = "SELECT payload FROM api_gateway.notification_statuses WHERE id = $1"

_FILTER = """
 WHERE s.api_key_id = $1
   AND ($2::uuid IS NULL OR s.user_id = $2::uuid)
   AND ($3::text IS NULL OR s.status = $3::text)
   AND ($4::text IS NULL OR s.notification_type = $4::text)
"""
_COUNT = f"SELECT count(*) FROM api_gateway.notification_statuses s {_FILTER}"
_PAGE = f"""
SELECT {_STATUS_COLUMNS} FROM api_gateway.notification_statuses s {_FILTER}
 ORDER BY s.created_at DESC, s.id DESC LIMIT $5 OFFSET $6
"""


def _jsonable(row: asyncpg.Record) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in row.items():
        out[name] = str(value) if isinstance(value, uuid.UUID) else value
    return out


def status_view(row: asyncpg.Record) -> dict[str, Any]:
    """The public shape of a status row (the `id` column is `notification_id`)."""
    data = _jsonable(row)
    data["notification_id"] = data.pop("id")
    return data


class NotificationStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.statuses = StatusStore(pool)

    async def recipient_email(self, notification_id: uuid.UUID) -> str | None:
        """The address the notification was accepted for (from the message kept with it)."""
        payload = await self.pool.fetchval(_PAYLOAD_OF, notification_id)
        if payload is None:
            return None
        return NotificationMessage.from_bytes(bytes(payload)).recipient.email

    async def accept(
        self,
        n: NewNotification,
        outbox: OutboxEntry | None,
        completion: IdempotencyCompletion | None,
    ) -> Accepted:
        """Write the notification (and its outbox row); the stored idempotent response gets
        the database's times filled in."""
        return await self._accept_on(self.pool, n, outbox, completion)

    async def accept_collapsing(
        self,
        n: NewNotification,
        outbox: OutboxEntry | None,
        completion: IdempotencyCompletion | None,
        window: CollapseWindow,
        collapsed: Callable[[uuid.UUID], tuple[NewNotification, IdempotencyCompletion | None]],
    ) -> tuple[Accepted, uuid.UUID | None]:
        """Accept a send with a `collapse_key`: open its window, or, within one another send
        opened, write what `collapsed(that notification)` says instead (a `skipped` row, no
        outbox row). One transaction; the window's row lock orders concurrent sends."""
        async with self.pool.acquire() as conn, conn.transaction():
            head = await conn.fetchval(
                _COLLAPSE,
                n.api_key_id,
                n.user_id,
                n.notification_type,
                window.key,
                n.id,
                float(window.seconds),
            )
            if head == n.id:
                return await self._accept_on(conn, n, outbox, completion), None
            n, completion = collapsed(head)
            return await self._accept_on(conn, n, None, completion), head

    async def purge_collapse_windows(self, limit: int = 1000) -> None:
        await self.pool.execute(_PURGE_COLLAPSE_WINDOWS, limit)

    async def _accept_on(
        self,
        db: asyncpg.Pool | asyncpg.Connection,
        n: NewNotification,
        outbox: OutboxEntry | None,
        completion: IdempotencyCompletion | None,
    ) -> Accepted:
        args: list[Any] = [
            n.id,
            n.api_key_id,
            n.request_id,
            n.notification_type,
            n.user_id,
            n.template_code,
            n.template_version,
            n.locale,
            n.priority,
            n.status,
            n.status_reason,
            n.metadata,
            n.scheduled_for,
            n.detail,
            outbox.payload if outbox else None,
            outbox.routing_key if outbox else None,
            outbox.correlation_id if outbox else None,
            outbox.kind if outbox else None,
            outbox.available_at if outbox else None,
            n.expires_at,
            n.ttl_seconds,
            outbox.grace_seconds if outbox else 0.0,
        ]
        if completion is None:
            row = await db.fetchrow(_ACCEPT_PLAIN, *args)
        else:
            args += [completion.status_code, completion.response, completion.key, completion.token]
            row = await db.fetchrow(_ACCEPT_CLAIMED, *args)
        assert row is not None
        if not row["inserted"]:
            # Our claim was taken over (we outlived the pending timeout): the other request
            # owns the key now, and nothing of ours was written.
            raise Conflict(
                "a request with this idempotency key is in progress",
                code="request_in_progress",
                headers={"Retry-After": "1"},
            )
        return Accepted(row["outbox_id"], row["created_at"], row["expires_at"])

    async def accept_group(
        self,
        rows: list[tuple[NewNotification, OutboxEntry | None]],
        completion: IdempotencyCompletion | None,
    ) -> AcceptedGroup:
        """Write the notifications of one send (a group's, or a push and its fallback) and
        their outbox rows in one statement; the rows share everything but the channel's own
        columns and their links."""
        first, entry = rows[0][0], next((e for _, e in rows if e is not None), None)
        args: list[Any] = [
            [n.id for n, _ in rows],
            [n.notification_type for n, _ in rows],
            [n.template_version for n, _ in rows],
            [n.locale for n, _ in rows],
            [n.status for n, _ in rows],
            [n.status_reason for n, _ in rows],
            [n.scheduled_for for n, _ in rows],
            [n.detail for n, _ in rows],
            [e.payload if e else None for _, e in rows],
            [e.kind if e else None for _, e in rows],
            [e.available_at if e else None for _, e in rows],
            [n.fallback_of for n, _ in rows],
            [n.fell_back_to for n, _ in rows],
            first.api_key_id,
            first.request_id,
            first.user_id,
            first.template_code,
            first.priority,
            first.metadata,
            first.group_id,
            entry.correlation_id if entry else None,
            first.expires_at,
            first.ttl_seconds,
            entry.grace_seconds if entry else 0.0,
            first.broadcast_id,
        ]
        if completion is None:
            row = await self.pool.fetchrow(_ACCEPT_GROUP_PLAIN, *args)
        else:
            args += [completion.status_code, completion.response, completion.key, completion.token]
            row = await self.pool.fetchrow(_ACCEPT_GROUP_CLAIMED, *args)
        assert row is not None
        if not row["inserted"]:
            raise Conflict(
                "a request with this idempotency key is in progress",
                code="request_in_progress",
                headers={"Retry-After": "1"},
            )
        outbox_ids = dict(
            zip(row["outbox_notifications"] or [], row["outbox_ids"] or [], strict=True)
        )
        return AcceptedGroup(outbox_ids, row["created_at"], row["expires_at"])

    async def group(self, api_key_id: uuid.UUID, group_id: uuid.UUID) -> dict[str, Any]:
        """The notifications of one multi-channel send, with their histories; 404 if none is
        this API key's."""
        rows = await self.pool.fetch(_GROUP, api_key_id, group_id)
        if not rows:
            raise NotFound("no notification group with this id", code="group_not_found")
        return {"group_id": str(group_id), "notifications": [status_view(r) for r in rows]}

    async def find(self, api_key_id: uuid.UUID, ref: str) -> dict[str, Any] | None:
        """By notification id or by the client's request id, within one API key."""
        try:
            as_uuid: uuid.UUID | None = uuid.UUID(ref)
        except ValueError:
            as_uuid = None
        row = await self.pool.fetchrow(_BY_ID_OR_REQUEST, api_key_id, as_uuid, ref)
        return status_view(row) if row is not None else None

    async def cancel(self, api_key_id: uuid.UUID, ref: str) -> dict[str, Any]:
        """Cancel a `scheduled` or `queued` notification of this API key; its status after.

        The move is the one conditional transition statement (from `scheduled`/`queued` only),
        so a cancel racing the relay's release or a worker's claim ends in exactly one of them:
        a claim never takes a `cancelled` row, and a cancel never moves a `processing` one. A
        copy already published is dropped by the claim; an outbox row left behind is dropped
        by the relay when it comes due. Cancelling a cancelled notification answers the same.
        """
        row = await self._ref(api_key_id, ref)
        if row is None:
            raise NotFound(
                "no notification with this id or request id", code="notification_not_found"
            )
        if row["status"] != NotificationStatus.CANCELLED:
            result = await self.statuses.transition(
                row["id"],
                NotificationStatus.CANCELLED,
                reason="cancelled",
                detail="cancelled through the API",
            )
            if not result.applied:
                raise Conflict(
                    f"a {result.status} notification cannot be cancelled",
                    code="not_cancellable",
                    details=[{"field": "status", "message": f"is {result.status}"}],
                )
        found = await self.find(api_key_id, str(row["id"]))
        assert found is not None
        return found

    async def _ref(self, api_key_id: uuid.UUID, ref: str) -> asyncpg.Record | None:
        try:
            as_uuid: uuid.UUID | None = uuid.UUID(ref)
        except ValueError:
            as_uuid = None
        row: asyncpg.Record | None = await self.pool.fetchrow(_REF_OF, api_key_id, as_uuid, ref)
        return row

    async def page(
        self,
        api_key_id: uuid.UUID,
        *,
        user_id: uuid.UUID | None,
        status: str | None,
        notification_type: str | None,
        page: int,
        limit: int,
    ) -> tuple[list[dict[str, Any]], int]:
        filters = (api_key_id, user_id, status, notification_type)
        async with self.pool.acquire() as conn:
            total: int = await conn.fetchval(_COUNT, *filters)
            rows = await conn.fetch(_PAGE, *filters, limit, (page - 1) * limit)
        return [status_view(r) for r in rows], total

    async def record_callback(
        self,
        notification_id: uuid.UUID,
        channel: str,
        to_status: NotificationStatus | None,
        *,
        detail: str,
        error: str | None,
        allowed_from: frozenset[NotificationStatus] | None = None,
    ) -> TransitionResult:
        """A worker's or provider's status report, through the same monotonic transition the
        workers use (None: a report that changes nothing; `allowed_from` narrows a failure to
        the states it may end); 404 for an unknown notification, 422 for another channel's."""
        kind = await self.pool.fetchval(_CHANNEL_OF, notification_id)
        if kind is None:
            raise NotFound("no such notification", code="notification_not_found")
        if kind != channel:
            raise ValidationFailed(
                f"this is a {kind} notification, not {channel}", code="channel_mismatch"
            )
        if to_status is None:
            return TransitionResult(
                applied=False, status=await self.statuses.current(notification_id)
            )
        return await self.statuses.transition(
            notification_id, to_status, detail=detail, error=error, allowed_from=allowed_from
        )
