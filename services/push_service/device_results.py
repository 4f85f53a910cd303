"""Per-device results of a push notification (`notification_device_results`).

They are what makes a retry send only to the devices that have not accepted yet: before
sending, the sender skips every token already `accepted` (or `rejected` for good); after
sending, it records this round. An `accepted` row is never downgraded, so a late or
duplicated attempt cannot make a delivered device look pending again.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from services.push_service.fcm import SendResult
from shared.notification_status import notification_device_results as table


class DeviceStatus(StrEnum):
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


def status_of(result: SendResult) -> DeviceStatus:
    if result.outcome == "accepted":
        return DeviceStatus.ACCEPTED
    if result.outcome == "transient":
        return DeviceStatus.PENDING
    return DeviceStatus.REJECTED


class DeviceResults:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def load(self, notification_id: uuid.UUID) -> dict[str, DeviceRecord]:
        """Every device token already tried for this notification, with its last result."""
        query = select(table.c.device_token, table.c.status, table.c.provider_message_id).where(
            table.c.notification_id == notification_id
        )
        async with self.engine.connect() as conn:
            rows = await conn.execute(query)
            return {token: DeviceRecord(DeviceStatus(status), name) for token, status, name in rows}

    async def record(self, notification_id: uuid.UUID, results: Sequence[SendResult]) -> None:
        if not results:
            return
        rows = [
            {
                "notification_id": notification_id,
                "device_token": r.token,
                "status": status_of(r).value,
                "provider_message_id": r.name,
                "error": r.error,
            }
            for r in results
        ]
        statement = insert(table).values(rows)
        statement = statement.on_conflict_do_update(
            index_elements=[table.c.notification_id, table.c.device_token],
            set_={
                "status": statement.excluded.status,
                "provider_message_id": statement.excluded.provider_message_id,
                "error": statement.excluded.error,
                "updated_at": func.now(),
            },
            where=table.c.status != DeviceStatus.ACCEPTED.value,
        )
        async with self.engine.begin() as conn:
            await conn.execute(statement)
