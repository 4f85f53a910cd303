"""The console's reads of the gateway's tables: search, one notification, its timeline and
device results. Admins see every API key's notifications.

Searches build their WHERE clause from the filters actually given (fixed fragments, numbered
parameters), so each shape gets a plan that uses its index, instead of one generic plan full
of `$n IS NULL OR ...` that PostgreSQL would run as a scan of the whole table. Pages are "has
next" (one row more than shown), never a count of a table with millions of rows.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg


@dataclass(frozen=True)
class Search:
    notification_id: uuid.UUID | None = None
    request_id: str | None = None
    user_id: uuid.UUID | None = None
    status: str | None = None
    channel: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None


@dataclass(frozen=True)
class SearchPage:
    items: list[dict[str, Any]]
    page: int
    limit: int
    has_next: bool


_SUMMARY = """
SELECT s.id, s.request_id, s.status, s.notification_type, s.user_id, s.template_code,
       s.template_version, s.locale, s.attempts, s.last_error, s.created_at, s.updated_at,
       k.name AS api_key_name
  FROM api_gateway.notification_statuses s
  LEFT JOIN api_gateway.api_keys k ON k.id = s.api_key_id
"""

# The variables come from the accepted message kept on the row (`payload`, JSON).
_DETAIL = """
SELECT s.*, k.name AS api_key_name,
       convert_from(s.payload, 'UTF8')::jsonb -> 'variables' AS variables
  FROM api_gateway.notification_statuses s
  LEFT JOIN api_gateway.api_keys k ON k.id = s.api_key_id
 WHERE s.id = $1
"""

_HISTORY = """
SELECT status, attempt, generation, detail, at
  FROM api_gateway.notification_status_history
 WHERE notification_id = $1
 ORDER BY at, id
"""

_DEVICES = """
SELECT device_token, status, provider_message_id, error, updated_at
  FROM api_gateway.notification_device_results
 WHERE notification_id = $1
 ORDER BY device_token
"""


def _where(search: Search) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    args: list[Any] = []

    def add(fragment: str, value: Any) -> None:
        args.append(value)
        clauses.append(fragment.format(n=len(args)))

    if search.notification_id is not None:
        add("s.id = ${n}", search.notification_id)
    if search.request_id is not None:
        # The index is (api_key_id, request_id): naming the keys lets PostgreSQL probe it
        # once per key instead of scanning every row.
        add(
            "s.api_key_id IN (SELECT id FROM api_gateway.api_keys) AND s.request_id = ${n}",
            search.request_id,
        )
    if search.user_id is not None:
        add("s.user_id = ${n}", search.user_id)
    if search.status is not None:
        add("s.status = ${n}", search.status)
    if search.channel is not None:
        add("s.notification_type = ${n}", search.channel)
    if search.created_from is not None:
        add("s.created_at >= ${n}", search.created_from)
    if search.created_to is not None:
        add("s.created_at < ${n}", search.created_to)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", args


def _plain(row: asyncpg.Record) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, uuid.UUID) else v) for k, v in row.items()}


class ConsoleStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def search(self, search: Search, *, page: int, limit: int) -> SearchPage:
        where, args = _where(search)
        n = len(args)
        sql = (
            f"{_SUMMARY}{where} ORDER BY s.created_at DESC, s.id DESC"
            f" LIMIT ${n + 1} OFFSET ${n + 2}"
        )
        rows = await self.pool.fetch(sql, *args, limit + 1, (page - 1) * limit)
        return SearchPage(
            items=[_plain(r) for r in rows[:limit]],
            page=page,
            limit=limit,
            has_next=len(rows) > limit,
        )

    async def notification(self, notification_id: uuid.UUID) -> dict[str, Any] | None:
        """The status row with its timeline and device results, or None."""
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(_DETAIL, notification_id)
            if row is None:
                return None
            history = await conn.fetch(_HISTORY, notification_id)
            devices = await conn.fetch(_DEVICES, notification_id)
        found = _plain(row)
        for internal in ("payload", "claim_token"):
            found.pop(internal, None)
        found["history"] = [_plain(h) for h in history]
        found["devices"] = [_plain(d) for d in devices]
        return found
