"""The email suppression list: addresses no email is sent to any more.

Large mailbox providers require it: an address that hard-bounced (a permanent recipient error,
SMTP `5.1.x`) or whose owner complained (reported through the provider callback) must not be
mailed again, or the sender's reputation suffers for every other recipient. An operator may add
or remove an address by hand.

The email worker asks `suppressed` before every send (one primary-key lookup; a suppressed
address ends the notification `skipped` with reason `suppressed` and opens no SMTP connection),
adds a hard bounce when the SMTP server refuses a recipient permanently, and the gateway's
callback and operator API write the rest. The table lives in the gateway's schema (its owner,
beside the status tables the workers already write); addresses are kept lower-cased.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import CheckConstraint, Column, DateTime, Index, String, Table, Text, func
from sqlalchemy.dialects.postgresql import UUID

from shared.notification_status import SCHEMA, Executor, metadata

suppressions = Table(
    "suppressions",
    metadata,
    Column("address", Text, primary_key=True),
    Column("reason", String(16), nullable=False),
    Column("detail", Text, nullable=True),
    Column("notification_id", UUID(as_uuid=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("address = lower(address)", name="ck_suppressions_lower"),
    CheckConstraint(
        "reason IN ('hard_bounce', 'complaint', 'manual')", name="ck_suppressions_reason"
    ),
    Index("ix_suppressions_created_at", "created_at"),
)


class SuppressionReason(StrEnum):
    HARD_BOUNCE = "hard_bounce"
    COMPLAINT = "complaint"
    MANUAL = "manual"


@dataclass(frozen=True)
class Suppression:
    address: str
    reason: SuppressionReason
    detail: str | None
    notification_id: uuid.UUID | None
    created_at: datetime

    def as_json(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "reason": self.reason.value,
            "detail": self.detail,
            "notification_id": str(self.notification_id) if self.notification_id else None,
            "created_at": self.created_at.isoformat(),
        }


_COLUMNS = "address, reason, detail, notification_id, created_at"

_IS_SUPPRESSED_SQL = f"SELECT 1 FROM {SCHEMA}.suppressions WHERE address = lower($1)"

# The first reason stays: a complaint after a bounce does not rewrite when it was suppressed.
_ADD_SQL = f"""
    INSERT INTO {SCHEMA}.suppressions (address, reason, detail, notification_id)
    VALUES (lower($1), $2, $3, $4)
    ON CONFLICT (address) DO NOTHING
"""

_GET_SQL = f"SELECT {_COLUMNS} FROM {SCHEMA}.suppressions WHERE address = lower($1)"

_REMOVE_SQL = f"DELETE FROM {SCHEMA}.suppressions WHERE address = lower($1) RETURNING address"

_PAGE_SQL = f"""
    SELECT {_COLUMNS}, count(*) OVER () AS total
      FROM {SCHEMA}.suppressions
     WHERE ($1::text IS NULL OR address LIKE lower($1) || '%')
       AND ($2::text IS NULL OR reason = $2)
     ORDER BY created_at DESC, address
     LIMIT $3 OFFSET $4
"""


class SuppressionList:
    """Every read and write of the list, one statement each, over an asyncpg pool."""

    def __init__(self, db: Executor) -> None:
        self.db = db

    async def suppressed(self, address: str) -> bool:
        return await self.db.fetchval(_IS_SUPPRESSED_SQL, address) is not None

    async def add(
        self,
        address: str,
        reason: SuppressionReason,
        *,
        detail: str | None = None,
        notification_id: uuid.UUID | None = None,
    ) -> Suppression:
        """Suppress `address` (idempotent: an address already listed keeps its first entry)."""
        await self.db.execute(
            _ADD_SQL, address, reason.value, detail[:500] if detail else None, notification_id
        )
        found = await self.get(address)
        assert found is not None  # just written, and never deleted in between but by an admin
        return found

    async def get(self, address: str) -> Suppression | None:
        rows = await self.db.fetch(_GET_SQL, address)
        return _suppression(rows[0]) if rows else None

    async def remove(self, address: str) -> bool:
        return bool(await self.db.fetch(_REMOVE_SQL, address))

    async def page(
        self,
        *,
        address_prefix: str | None,
        reason: SuppressionReason | None,
        limit: int,
        offset: int,
    ) -> tuple[list[Suppression], int]:
        prefix = None
        if address_prefix is not None:  # a prefix, not a pattern: `%` and `_` match themselves
            prefix = address_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        rows = await self.db.fetch(
            _PAGE_SQL, prefix, reason.value if reason else None, limit, offset
        )
        return [_suppression(r) for r in rows], int(rows[0]["total"]) if rows else 0


def _suppression(row: Any) -> Suppression:
    return Suppression(
        address=row["address"],
        reason=SuppressionReason(row["reason"]),
        detail=row["detail"],
        notification_id=row["notification_id"],
        created_at=row["created_at"],
    )
