"""Typed views of what the gateway sends and answers.

Written by hand and held to the committed OpenAPI contract by a test (the README says why they
are not generated). Responses are read leniently so that this client keeps working against a
newer gateway: unknown fields are kept (`model_extra`), and a status or channel the client does
not know yet stays a plain string instead of failing the whole response.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, PrivateAttr


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


# A notification in one of these never changes again; `wait` and `watch` stop there.
TERMINAL_STATUSES: frozenset[str] = frozenset(
    {
        NotificationStatus.DELIVERED,
        NotificationStatus.FAILED,
        NotificationStatus.SKIPPED,
        NotificationStatus.EXPIRED,
        NotificationStatus.CANCELLED,
    }
)


class Channel(StrEnum):
    EMAIL = "email"
    PUSH = "push"


# Known values become the enum; a value a newer gateway added stays a string.
Status = Annotated[NotificationStatus | str, Field(union_mode="left_to_right")]
ChannelName = Annotated[Channel | str, Field(union_mode="left_to_right")]
Priority = Literal["low", "normal", "high"] | Annotated[int, Field(ge=0, le=9)]


class _Response(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


# --- notifications ---------------------------------------------------------------------


class SendRequest(BaseModel):
    """One notification to send: the body of `send`, and one item of `send_bulk`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    user_id: uuid.UUID
    template_code: str
    notification_type: ChannelName = Channel.EMAIL
    variables: dict[str, Any] = Field(default_factory=dict)
    # Names the notification for lookups and deduplicates its retries: keep the same value
    # when you send the same notification again.
    request_id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    priority: Priority = "normal"
    locale: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    send_at: AwareDatetime | None = Field(
        default=None, description="Deliver at this time instead of now (needs a timezone)."
    )
    expires_at: AwareDatetime | None = Field(
        default=None, description="Never deliver after this time (it ends `expired`)."
    )
    ttl_seconds: int | None = Field(
        default=None, ge=1, description="Instead of `expires_at`: seconds after acceptance."
    )

    def body(self) -> dict[str, Any]:
        """The JSON body. Unset optional fields are left out, so a gateway that predates one
        of them (it refuses unknown fields) still accepts every send that does not use it."""
        return self.model_dump(mode="json", exclude_none=True)


class Accepted(_Response):
    """The answer to a send: the notification exists and is durable."""

    notification_id: uuid.UUID
    status: Status
    request_id: str | None = None
    notification_type: ChannelName
    created_at: datetime
    status_reason: str | None = None
    scheduled_for: datetime | None = None
    expires_at: datetime | None = None
    collapsed_into: uuid.UUID | None = None
    """Only with a `collapse_key`: the notification whose window this send fell into."""
    fallback: Accepted | None = None
    """Only with a `fallback`: the other channel's notification, sent if this one is not."""

    _replayed: bool = PrivateAttr(default=False)

    @property
    def replayed(self) -> bool:
        """True when the gateway answered with the first response to this idempotency key:
        the notification was accepted earlier and nothing was sent twice."""
        return self._replayed


class HistoryEntry(_Response):
    status: Status
    at: datetime
    detail: str | None = None
    attempt: int = 0


class Notification(_Response):
    """A notification as the list shows it."""

    notification_id: uuid.UUID
    request_id: str | None = None
    status: Status
    status_reason: str | None = None
    notification_type: ChannelName
    user_id: uuid.UUID
    template_code: str
    template_version: int | None = None
    locale: str | None = None
    priority: int
    attempts: int = 0
    last_error: str | None = None
    scheduled_for: datetime | None = None
    next_attempt_at: datetime | None = None
    expires_at: datetime | None = None
    created_at: datetime
    updated_at: datetime
    delivered_at: datetime | None = None
    group_id: uuid.UUID | None = None
    """Set when one send made it with others, for several channels."""
    fell_back_to: uuid.UUID | None = None
    """Its fallback notification, sent if this one is not delivered."""
    fallback_of: uuid.UUID | None = None
    """The notification this one is the fallback of."""

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


class NotificationDetail(Notification):
    """A notification with its timeline, oldest entry first."""

    history: list[HistoryEntry] = Field(default_factory=list)


class PageMeta(_Response):
    total: int
    limit: int
    page: int
    total_pages: int
    has_next: bool
    has_previous: bool


T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    meta: PageMeta


class FieldError(_Response):
    field: str
    message: str


@dataclass(frozen=True)
class RateLimit:
    """The `RateLimit-*` headers of a response: the tightest bucket that applied."""

    limit: int
    remaining: int
    reset_seconds: float


# --- bulk send -------------------------------------------------------------------------


class BulkItemResult(_Response):
    """One item of a bulk send, in the order sent: the accepted notification or its error."""

    index: int | None = None
    notification_id: uuid.UUID | None = None
    status: Status | None = None
    request_id: str | None = None
    error: str | None = None
    message: str | None = None
    details: list[FieldError] | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.notification_id is not None


# --- webhooks --------------------------------------------------------------------------

WEBHOOK_EVENTS = (
    "notification.queued",
    "notification.delivered",
    "notification.failed",
    "notification.skipped",
    "notification.expired",
    "notification.cancelled",
    "*",
)


class WebhookEndpoint(_Response):
    id: str
    url: str
    events: list[str] = Field(default_factory=list)
    description: str | None = None
    created_at: datetime | None = None


class CreatedWebhookEndpoint(WebhookEndpoint):
    """What registration and rotation answer: the signing secret, shown this once."""

    secret: str


class WebhookDelivery(_Response):
    id: str
    event_type: str | None = None
    status_code: int | None = None
    latency_ms: float | None = None
    attempts: int | None = None
    created_at: datetime | None = None


class WebhookEvent(_Response):
    """A verified delivery: `{type, timestamp, data}`. For `notification.*` events `data` is
    the notification (see `notification`); other events (a test ping) carry their own data."""

    type: str
    timestamp: datetime
    data: dict[str, Any] = Field(default_factory=dict)

    @property
    def notification(self) -> Notification:
        return Notification.model_validate(self.data)


# --- dead letters (operators) ----------------------------------------------------------


class DeadLetter(_Response):
    message_id: str
    channel: str | None = None
    notification_id: uuid.UUID | None = None
    reason: str | None = None
    failed_at: datetime | None = None
    attempts: int | None = None


class SkippedReplay(_Response):
    message_id: str | None = None
    reason: str | None = None


class ReplayResult(_Response):
    """What a replay put back to work (message ids) and what it left, with why."""

    replayed: list[str] = Field(default_factory=list)
    skipped: list[SkippedReplay] = Field(default_factory=list)


class PurgeResult(_Response):
    purged: int = 0
