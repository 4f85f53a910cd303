"""Notification rows as the gateway writes and reads them (raw SQL over asyncpg).

`accept` is the one statement of the send path that makes a notification exist: in a single
data-modifying CTE it completes the idempotency claim, inserts the status row and its first
history row, and inserts the outbox row with the message. One statement is one transaction and
one round trip; if the claim is no longer ours, nothing else is written.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from shared.errors import Conflict


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
    created_at: datetime
    detail: str


@dataclass(frozen=True)
class OutboxEntry:
    routing_key: str
    payload: bytes
    correlation_id: str
    kind: str  # "publish" | "release"
    available_at: datetime


@dataclass(frozen=True)
class IdempotencyCompletion:
    key: str
    token: uuid.UUID
    status_code: int
    response: dict[str, Any]


_ACCEPT = """
WITH {claim_cte}, ins AS (
    INSERT INTO api_gateway.notification_statuses
           (id, api_key_id, request_id, notification_type, user_id, template_code,
            template_version, locale, priority, status, status_reason, metadata, scheduled_for,
            created_at, updated_at, variables)
    SELECT $1::uuid, $2::uuid, $3::text, $4::text, $5::uuid, $6::text, $7::int, $8::text,
           $9::int, $10::text, $11::text, $12::jsonb, $13::timestamptz, $14::timestamptz,
           $14::timestamptz,
           -- the variables, for the console's rendered content: taken from the message
           -- itself (JSON), so no extra parameter; a skipped notification has none
           convert_from($17::bytea, 'UTF8')::jsonb -> 'variables'
      FROM claim
    RETURNING id, status
), hist AS (
    INSERT INTO api_gateway.notification_status_history (notification_id, status, detail, at)
    SELECT id, status, $15::text, $14::timestamptz FROM ins
), ob AS (
    INSERT INTO api_gateway.outbox
           (notification_id, routing_key, payload, priority, correlation_id, kind, available_at)
    SELECT id, $16::text, $17::bytea, $9::int, $18::text, $19::text, $20::timestamptz FROM ins
     WHERE $17::bytea IS NOT NULL
    RETURNING id
)
SELECT (SELECT count(*) FROM ins) AS inserted, (SELECT id FROM ob) AS outbox_id
"""

_ACCEPT_PLAIN = _ACCEPT.format(claim_cte="claim AS (SELECT 1)")
_ACCEPT_CLAIMED = _ACCEPT.format(
    claim_cte="""claim AS (
    UPDATE api_gateway.idempotency_records
       SET state = 'completed', status_code = $21::int, response = $22::jsonb,
           notification_id = $1::uuid
     WHERE api_key_id = $2::uuid AND key = $23::text AND claim_token = $24::uuid
       AND state = 'pending'
    RETURNING 1
)"""
)

_STATUS_COLUMNS = """
    s.id, s.request_id, s.status, s.status_reason, s.notification_type, s.user_id,
    s.template_code, s.template_version, s.locale, s.priority, s.attempts, s.last_error,
    s.scheduled_for, s.created_at, s.updated_at, s.delivered_at
"""

_BY_ID_OR_REQUEST = f"""
SELECT {_STATUS_COLUMNS},
       COALESCE((SELECT jsonb_agg(jsonb_build_object('status', h.status, 'at', h.at,
                                                     'detail', h.detail) ORDER BY h.at, h.id)
                   FROM api_gateway.notification_status_history h
                  WHERE h.notification_id = s.id), '[]'::jsonb) AS history
  FROM api_gateway.notification_statuses s
 WHERE s.api_key_id = $1 AND (s.id = $2::uuid OR s.request_id = $3::text)
 ORDER BY (s.id IS NOT DISTINCT FROM $2::uuid) DESC, s.created_at DESC
 LIMIT 1
"""

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

    async def accept(
        self,
        n: NewNotification,
        outbox: OutboxEntry | None,
        completion: IdempotencyCompletion | None,
    ) -> int | None:
        """Write the notification (and its outbox row); return the outbox row id, if any."""
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
            n.created_at,
            n.detail,
            outbox.routing_key if outbox else None,
            outbox.payload if outbox else None,
            outbox.correlation_id if outbox else None,
            outbox.kind if outbox else None,
            outbox.available_at if outbox else None,
        ]
        if completion is None:
            row = await self.pool.fetchrow(_ACCEPT_PLAIN, *args)
        else:
            args += [completion.status_code, completion.response, completion.key, completion.token]
            row = await self.pool.fetchrow(_ACCEPT_CLAIMED, *args)
        assert row is not None
        if not row["inserted"]:
            # Our claim was taken over (we outlived the pending timeout): the other request
            # owns the key now, and nothing of ours was written.
            raise Conflict(
                "a request with this idempotency key is in progress",
                code="request_in_progress",
                headers={"Retry-After": "1"},
            )
        outbox_id: int | None = row["outbox_id"]
        return outbox_id

    async def find(self, api_key_id: uuid.UUID, ref: str) -> dict[str, Any] | None:
        """By notification id or by the client's request id, within one API key."""
        try:
            as_uuid: uuid.UUID | None = uuid.UUID(ref)
        except ValueError:
            as_uuid = None
        row = await self.pool.fetchrow(_BY_ID_OR_REQUEST, api_key_id, as_uuid, ref)
        return status_view(row) if row is not None else None

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
