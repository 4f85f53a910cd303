"""HTTP bodies of the gateway: the two send contracts, status views and the callback.

Both send bodies become one `SendCommand`, so the use case knows nothing of the aliases.
Unknown top-level fields are refused (a typo is a 422 naming it, not a silently dropped value).
"""

from __future__ import annotations

import math
import re
import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AnyUrl,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    model_validator,
)

from shared.locales import MAX_LOCALE_LENGTH, normalize_locale
from shared.messaging.message import Channel
from shared.notification_status import NotificationStatus

PRIORITY_WORDS = {"low": 2, "normal": 5, "high": 8}
MAX_DEPTH = 32
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _storable(value: Any, depth: int = 0) -> Any:
    """Refuse what PostgreSQL's text/jsonb cannot store (NUL, lone surrogates) or JSON cannot
    carry (NaN, Infinity: Python's parser accepts them), anywhere in a nested value, so it is a
    422 at the edge instead of a database error later."""
    if depth > MAX_DEPTH:
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, str):
        if _UNSTORABLE.search(value):
            raise ValueError("contains a NUL character or an unpaired surrogate")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("numbers must be finite")
    elif isinstance(value, dict):
        for key, item in value.items():
            _storable(key, depth + 1)
            _storable(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _storable(item, depth + 1)
    return value


JsonObject = Annotated[dict[str, Any], AfterValidator(_storable)]
RequestId = Annotated[
    str, StringConstraints(min_length=1, max_length=255), AfterValidator(_storable)
]

TemplateCode = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
]
Locale = Annotated[
    str,
    Field(
        min_length=2,
        max_length=MAX_LOCALE_LENGTH,
        description="a BCP 47 language tag (`en`, `pt-BR`); the template's locale fallback "
        "applies (`pt-BR` -> `pt` -> the default)",
    ),
    AfterValidator(normalize_locale),
]
PriorityNumber = Annotated[int, Strict(), Field(ge=0, le=9)]


@dataclass(frozen=True)
class SendCommand:
    """A send request, whichever contract it came in."""

    notification_type: Channel
    user_id: uuid.UUID
    template_code: str
    variables: dict[str, Any]
    request_id: str | None
    priority: int
    locale: str | None
    metadata: dict[str, Any]
    expires_at: datetime | None = None
    ttl_seconds: int | None = None
    send_at: datetime | None = None
    channels: tuple[Channel, ...] = ()
    """Several channels in one send (`notification_type` is then the first): one
    notification each, linked by a group id."""
    collapse_key: str | None = None
    collapse_window_seconds: int | None = None
    fallback_channel: Channel | None = None
    fallback_after_seconds: int | None = None
    broadcast_id: uuid.UUID | None = None
    """Set by a topic's fan-out: the broadcast this send is part of."""


MAX_TTL_SECONDS = 366 * 24 * 3600
MAX_COLLAPSE_WINDOW_SECONDS = 7 * 24 * 3600
MAX_FALLBACK_SECONDS = 24 * 3600
CollapseKey = Annotated[
    str, StringConstraints(min_length=1, max_length=128), AfterValidator(_storable)
]


class Fallback(BaseModel):
    """Send on another channel instead if this one cannot be delivered."""

    model_config = ConfigDict(extra="forbid")

    channel: Channel
    after_seconds: int = Field(
        ge=1,
        le=MAX_FALLBACK_SECONDS,
        description="Not `delivered` by then (from acceptance): the fallback is sent.",
    )


class SendRequest(BaseModel):
    """`POST /v1/notifications/send`. `channel`/`template_slug` are accepted legacy names."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "notification_type": "email",
                    "user_id": "0b0f3c1e-8f7a-4c1e-9a57-3a1f5e2b7c10",
                    "template_code": "welcome",
                    "variables": {"name": "Ada", "link": "https://example.com/start"},
                    "request_id": "a4b0d0c4-3c4c-4f9e-8f6c-0d3d9c1f2e11",
                    "priority": "normal",
                },
                {
                    "notification_type": "push",
                    "user_id": "0b0f3c1e-8f7a-4c1e-9a57-3a1f5e2b7c10",
                    "template_code": "welcome",
                    "variables": {"name": "Ada", "link": "https://example.com/start"},
                    "request_id": "reminder-2026-12-24-ada",
                    "send_at": "2026-12-24T09:00:00+01:00",
                },
                {
                    "channels": ["push", "email"],
                    "user_id": "0b0f3c1e-8f7a-4c1e-9a57-3a1f5e2b7c10",
                    "template_code": "welcome",
                    "variables": {"name": "Ada", "link": "https://example.com/start"},
                    "request_id": "welcome-ada-both",
                },
                {
                    "notification_type": "push",
                    "user_id": "0b0f3c1e-8f7a-4c1e-9a57-3a1f5e2b7c10",
                    "template_code": "new_message",
                    "variables": {"name": "Ada", "link": "https://example.com/inbox"},
                    "collapse_key": "inbox-unread",
                    "collapse_window_seconds": 300,
                },
                {
                    "notification_type": "push",
                    "user_id": "0b0f3c1e-8f7a-4c1e-9a57-3a1f5e2b7c10",
                    "template_code": "welcome",
                    "variables": {"name": "Ada", "link": "https://example.com/start"},
                    "fallback": {"channel": "email", "after_seconds": 300},
                },
            ]
        },
    )

    notification_type: Channel | None = None
    channel: Channel | None = Field(default=None, description="Alias of notification_type.")
    channels: list[Channel] | None = Field(
        default=None,
        min_length=1,
        description="Instead of `notification_type`: one notification per channel (each "
        "channel once), made in one accept and linked by a `group_id`; the 202 lists each.",
    )
    collapse_key: CollapseKey | None = Field(
        default=None,
        description="With `collapse_window_seconds`: a later send with the same key to the "
        "same user and channel within the window is accepted as `skipped` (`collapsed`), and "
        "its answer's `collapsed_into` names the notification that opened the window.",
    )
    collapse_window_seconds: int | None = Field(
        default=None,
        ge=1,
        le=MAX_COLLAPSE_WINDOW_SECONDS,
        description="How long the window of a `collapse_key` stays open after the first send.",
    )
    fallback: Fallback | None = Field(
        default=None,
        description="On a single-channel send: if it cannot be delivered (no device, every "
        "token dead, a permanent failure) or is not `delivered` within `after_seconds`, the "
        "same template is sent once on `channel` instead (unless the user turned that "
        "channel off). The 202's `fallback` is that notification, `scheduled` until then.",
    )
    user_id: uuid.UUID
    template_code: TemplateCode | None = None
    template_slug: TemplateCode | None = Field(default=None, description="Alias of template_code.")
    variables: JsonObject = Field(default_factory=dict)
    request_id: RequestId | None = None
    priority: Literal["low", "normal", "high"] | PriorityNumber = Field(
        default="normal", description='"low" | "normal" | "high" (2/5/8) or 0-9.'
    )
    locale: Locale | None = None
    metadata: JsonObject = Field(default_factory=dict)
    expires_at: AwareDatetime | None = Field(
        default=None,
        description="ISO 8601 with an offset. Not delivered after this instant: a worker that "
        "gets it later marks it `expired`; push passes the time left on as the message TTL.",
    )
    ttl_seconds: int | None = Field(
        default=None,
        ge=1,
        le=MAX_TTL_SECONDS,
        description="Instead of `expires_at`: expires this many seconds after acceptance.",
    )
    send_at: AwareDatetime | None = Field(
        default=None,
        description="ISO 8601 with an offset, at most one year ahead: the notification is "
        "`scheduled` and sent at this instant (the user's preferences, quiet hours and current "
        "contact are read then). In the past: 422 `send_at_in_past`; too far: 422 "
        "`send_at_too_far`; at or after the expiry: 422 `send_at_after_expiry`.",
    )

    @model_validator(mode="after")
    def _aliases_agree(self) -> SendRequest:
        if self.channels is not None:
            if self.notification_type is not None or self.channel is not None:
                raise ValueError("give notification_type or channels, not both")
            if len(set(self.channels)) != len(self.channels):
                raise ValueError("channels must not repeat a channel")
            if self.collapse_key is not None or self.fallback is not None:
                raise ValueError("collapse_key and fallback are for single-channel sends")
        if (self.collapse_key is None) != (self.collapse_window_seconds is None):
            raise ValueError("give collapse_key and collapse_window_seconds together")
        for name, alias in (("notification_type", "channel"), ("template_code", "template_slug")):
            if name == "notification_type" and self.channels is not None:
                continue
            value, other = getattr(self, name), getattr(self, alias)
            if value is None and other is None:
                raise ValueError(f"one of {name} or {alias} is required")
            if value is not None and other is not None and value != other:
                raise ValueError(f"{name} and {alias} disagree")
        channel = self.notification_type or self.channel
        if self.fallback is not None and self.fallback.channel == channel:
            raise ValueError("the fallback channel must differ from the send's")
        if self.fallback is not None and self.collapse_key is not None:
            raise ValueError("give collapse_key or fallback, not both")
        if self.expires_at is not None and self.ttl_seconds is not None:
            raise ValueError("give expires_at or ttl_seconds, not both")
        return self

    def to_command(self) -> SendCommand:
        channels = tuple(self.channels or ())
        channel = self.notification_type or self.channel or channels[0]
        code = self.template_code or self.template_slug
        assert channel is not None and code is not None  # the validator guarantees both
        priority = (
            PRIORITY_WORDS[self.priority] if isinstance(self.priority, str) else self.priority
        )
        return SendCommand(
            notification_type=channel,
            user_id=self.user_id,
            template_code=code,
            variables=self.variables,
            request_id=self.request_id,
            priority=priority,
            locale=self.locale,
            metadata=self.metadata,
            expires_at=self.expires_at,
            ttl_seconds=self.ttl_seconds,
            send_at=self.send_at,
            channels=channels,
            collapse_key=self.collapse_key,
            collapse_window_seconds=self.collapse_window_seconds,
            fallback_channel=self.fallback.channel if self.fallback else None,
            fallback_after_seconds=self.fallback.after_seconds if self.fallback else None,
        )


class LegacyVariables(BaseModel):
    """The task statement's variables: `name`, `link` (a URL) and optional `meta`."""

    model_config = ConfigDict(extra="allow")

    name: Annotated[str, StringConstraints(min_length=1, max_length=200), AfterValidator(_storable)]
    link: AnyUrl
    meta: JsonObject | None = None

    @model_validator(mode="after")
    def _extras_storable(self) -> LegacyVariables:
        _storable(self.model_extra or {})
        return self


class LegacySendRequest(BaseModel):
    """`POST /api/v1/notifications/`: the legacy body (integer priority, fixed variables)."""

    model_config = ConfigDict(extra="forbid")

    notification_type: Channel
    user_id: uuid.UUID
    template_code: TemplateCode
    variables: LegacyVariables
    request_id: RequestId | None = None
    priority: PriorityNumber = 5
    metadata: JsonObject | None = None
    send_at: AwareDatetime | None = Field(
        default=None,
        description="ISO 8601 with an offset, at most one year ahead: the notification is "
        "`scheduled` and sent at this instant (the user's preferences, quiet hours and current "
        "contact are read then). In the past: 422 `send_at_in_past`; too far: 422 "
        "`send_at_too_far`; at or after the expiry: 422 `send_at_after_expiry`.",
    )

    def to_command(self) -> SendCommand:
        variables = self.variables.model_dump(mode="json", exclude_none=True)
        return SendCommand(
            notification_type=self.notification_type,
            user_id=self.user_id,
            template_code=self.template_code,
            variables=variables,
            request_id=self.request_id,
            priority=self.priority,
            locale=None,
            metadata=self.metadata or {},
            send_at=self.send_at,
        )


# --- responses (documentation; the hot path serialises plain dicts) -----------------------


class AcceptedNotification(BaseModel):
    """One notification a send made."""

    notification_id: uuid.UUID
    status: NotificationStatus
    request_id: str | None
    notification_type: Channel
    created_at: datetime
    status_reason: str | None = Field(
        default=None, description="Why a notification was skipped or scheduled."
    )
    scheduled_for: datetime | None = Field(
        default=None,
        description="When a `scheduled` notification will be sent: its `send_at`, the end "
        "of the user's quiet hours, or (a fallback) its send's deadline.",
    )
    expires_at: datetime | None = Field(
        default=None, description="Not delivered after this instant, if the send set one."
    )


class Accepted(AcceptedNotification):
    """The 202 of a single-channel send."""

    collapsed_into: uuid.UUID | None = Field(
        default=None,
        description="Only on a send with a `collapse_key`: when it was collapsed (`skipped`, "
        "`collapsed`), the notification whose window it fell into; else null.",
    )
    fallback: AcceptedNotification | None = Field(
        default=None,
        description="Only on a send with a `fallback`: the other channel's notification, "
        "`scheduled` until the deadline (at once if this one was skipped at acceptance).",
    )


class AcceptedGroup(BaseModel):
    """The 202 of a send with `channels`: one entry per channel, in the order given."""

    group_id: uuid.UUID
    request_id: str | None
    created_at: datetime
    expires_at: datetime | None = None
    notifications: list[AcceptedNotification]


class HistoryEntry(BaseModel):
    status: NotificationStatus
    at: datetime
    detail: str | None
    attempt: int


class StatusSummary(BaseModel):
    notification_id: uuid.UUID
    request_id: str | None
    status: NotificationStatus
    status_reason: str | None
    notification_type: Channel
    user_id: uuid.UUID
    template_code: str
    template_version: int | None
    locale: str | None
    priority: int
    attempts: int
    last_error: str | None
    scheduled_for: datetime | None
    next_attempt_at: datetime | None = Field(
        description="While `retrying`: when the next attempt is due."
    )
    expires_at: datetime | None
    created_at: datetime
    updated_at: datetime
    delivered_at: datetime | None
    group_id: uuid.UUID | None = Field(
        default=None, description="Set when one send made it with others (`channels`)."
    )
    fell_back_to: uuid.UUID | None = Field(
        default=None, description="Its `fallback` notification, sent if this one is not."
    )
    fallback_of: uuid.UUID | None = Field(
        default=None, description="The notification this one is the `fallback` of."
    )


class StatusDetail(StatusSummary):
    history: list[HistoryEntry]


class Group(BaseModel):
    group_id: uuid.UUID
    notifications: list[StatusDetail]


class StatusCallback(BaseModel):
    """The task's worker/provider callback. Unknown fields are ignored: providers add some."""

    model_config = ConfigDict(extra="ignore")

    notification_id: uuid.UUID
    status: Literal["delivered", "pending", "failed", "bounced", "complained"] = Field(
        description="`bounced` and `complained` (email only) also put the notification's "
        "address on the suppression list"
    )
    timestamp: datetime | None = None
    error: Annotated[str, StringConstraints(max_length=2000), AfterValidator(_storable)] | None = (
        None
    )


class CallbackResult(BaseModel):
    notification_id: uuid.UUID
    status: NotificationStatus
    applied: bool
    suppressed: bool = False
    """A `bounced`/`complained` report put the address on the suppression list."""


# --- topics and broadcasts ---------------------------------------------------------------

TopicKey = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:\-]*$")
]
MAX_SUBSCRIBERS_PER_CALL = 10_000


class TopicPut(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"description": "Release notes"}]}
    )

    description: (
        Annotated[str, StringConstraints(max_length=1000), AfterValidator(_storable)] | None
    ) = None


class TopicView(BaseModel):
    key: str
    description: str | None
    subscribers: int
    created_at: datetime
    updated_at: datetime


class SubscriberList(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"user_ids": ["0b0f3c1e-8f7a-4c1e-9a57-3a1f5e2b7c10"]}]},
    )

    user_ids: list[uuid.UUID] = Field(min_length=1, max_length=MAX_SUBSCRIBERS_PER_CALL)


class SubscribersChanged(BaseModel):
    topic: str
    changed: int = Field(description="Subscribers added (or removed) by this call.")
    subscribers: int = Field(description="Subscribers of the topic after this call.")


class TopicSendRequest(BaseModel):
    """`POST /v1/topics/{key}/send`: a send without `user_id`, made for every subscriber."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "notification_type": "email",
                    "template_code": "welcome",
                    "variables": {"name": "there", "link": "https://example.com/news"},
                    "request_id": "release-notes-2026-12",
                }
            ]
        },
    )

    notification_type: Channel
    template_code: TemplateCode
    variables: JsonObject = Field(default_factory=dict)
    request_id: RequestId | None = Field(
        default=None, description="Makes the topic send safe to retry (one broadcast)."
    )
    priority: Literal["low", "normal", "high"] | PriorityNumber = "normal"
    locale: Locale | None = None
    metadata: JsonObject = Field(default_factory=dict)
    send_at: AwareDatetime | None = Field(
        default=None,
        description="As on a send; a subscriber the fan-out reaches after it is sent at once.",
    )

    def for_user(self, user_id: uuid.UUID, broadcast_id: uuid.UUID, now: datetime) -> SendCommand:
        send_at = self.send_at if self.send_at is not None and self.send_at > now else None
        body = self.model_dump(mode="json", exclude={"request_id", "send_at"})
        command = SendRequest.model_validate(
            {**body, "user_id": str(user_id), "send_at": send_at}
        ).to_command()
        return replace(command, broadcast_id=broadcast_id)


class BroadcastAccepted(BaseModel):
    broadcast_id: uuid.UUID
    topic: str
    total: int = Field(description="Subscribers when it was sent: the notifications to make.")
    created_at: datetime


class BroadcastView(BaseModel):
    broadcast_id: uuid.UUID
    topic: str
    state: Literal["fanning_out", "done"]
    total: int
    fanned_out: int = Field(description="Subscribers the fan-out has reached so far.")
    queued: int = Field(description="On their way: not ended yet, or not reached yet.")
    delivered: int
    failed: int = Field(description="`failed` or `expired`.")
    skipped: int = Field(description="`skipped`, `cancelled`, or not sendable (user deleted).")
    created_at: datetime
    updated_at: datetime
