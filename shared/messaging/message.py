"""The message envelope published to RabbitMQ, one per notification and channel.

Mirrored by `shared/schemas/notification_message.schema.json` (generated from this model) and
`shared/proto/notification.proto`; `tests/unit/test_message_schema.py` keeps all three in step.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1


class Channel(StrEnum):
    EMAIL = "email"
    PUSH = "push"


class DeviceTarget(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    token: str = Field(min_length=1, max_length=4096)
    platform: Literal["android", "ios", "web"] = "android"


class Recipient(BaseModel):
    """Where to deliver: an address for email, device tokens for push."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = None
    email: str | None = None
    devices: list[DeviceTarget] = Field(default_factory=list)


class TemplateRef(BaseModel):
    """A pinned template version: workers render exactly this, whatever is active later."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str
    version: int = Field(ge=1)
    locale: str
    category: str = Field(
        default="transactional",
        description="The template's category when it was sent: anything but `transactional` "
        "carries an unsubscribe link and honours the user's per-category opt-outs.",
    )


class NotificationMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = 1
    notification_id: UUID
    notification_type: Channel
    user_id: UUID
    recipient: Recipient
    template: TemplateRef
    variables: dict[str, Any] = Field(default_factory=dict)
    priority: int = Field(default=5, ge=0, le=9)
    request_id: str | None = None
    correlation_id: str
    attempt: int = Field(default=1, ge=1, description="1 for the first delivery attempt.")
    created_at: datetime
    metadata: dict[str, Any] = Field(default_factory=dict)
    expires_at: datetime | None = Field(
        default=None, description="Not delivered after this instant (the claim marks it expired)."
    )

    def next_attempt(self) -> NotificationMessage:
        return self.model_copy(update={"attempt": self.attempt + 1})

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_bytes(cls, body: bytes) -> NotificationMessage:
        return cls.model_validate_json(body)
