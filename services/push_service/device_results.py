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

import asyncpg

from services.push_service.fcm import SendResult
from shared.notification_status import SCHEMA


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


_LOAD = f"""
    SELECT device_token, status, provider_message_id
      FROM {SCHEMA}.notification_device_results
     WHERE notification_id = $1
"""

# One static statement for any number of devices (arrays unnested), so asyncpg's prepared
# statement cache always hits; an `accepted` row is never downgraded.
_RECORD = f"""
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


class DeviceResults:
    """Reads and writes over the worker's plain asyncpg pool (the hot path, like statuses)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def load(self, notification_id: uuid.UUID) -> dict[str, DeviceRecord]:
        """Every device token already tried for this notification, with its last result."""
        rows = await self.pool.fetch(_LOAD, notification_id)
        return {r[0]: DeviceRecord(DeviceStatus(r[1]), r[2]) for r in rows}

    async def record(self, notification_id: uuid.UUID, results: Sequence[SendResult]) -> None:
        if not results:
            return
        await self.pool.execute(
            _RECORD,
            notification_id,
            [r.token for r in results],
            [status_of(r).value for r in results],
            [r.name for r in results],
            [r.error for r in results],
        )
