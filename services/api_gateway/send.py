"""The send use case: from a validated command to a durable notification and a 202.

Order: the route has validated and rate-limited; here come idempotency, enrichment
(contact, active template, a render check), the user's preferences, then one accept statement
(status row + history + idempotency record + outbox row) and the inline publish. A failure
before the accept releases the idempotency claim, so a retry runs afresh.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Counter

from services.api_gateway.api_keys import ApiKey
from services.api_gateway.clients import TemplateLookup
from services.api_gateway.idempotency import Claim, IdempotencyStore, Replay
from services.api_gateway.outbox import Outbox, OutboxMessage
from services.api_gateway.preferences import Decision, decide
from services.api_gateway.schemas import SendCommand
from services.api_gateway.settings import GatewaySettings
from services.api_gateway.store import (
    IdempotencyCompletion,
    NewNotification,
    NotificationStore,
    OutboxEntry,
)
from shared.contacts import ContactDirectory, UserNotFound
from shared.contracts import Contact, TemplateVersion
from shared.envelope import ok
from shared.errors import ValidationFailed
from shared.logging import get_correlation_id, new_correlation_id
from shared.messaging.message import (
    DeviceTarget,
    NotificationMessage,
    Recipient,
    TemplateRef,
)
from shared.notification_status import NotificationStatus
from shared.rendering import missing_variables, unsafe_links

logger = logging.getLogger("api_gateway.send")

ACCEPTED = Counter(
    "notifications_gateway_accepted_total",
    "Notifications accepted (202), by type and initial status.",
    ["notification_type", "status"],
)
REPLAYS = Counter(
    "notifications_gateway_idempotent_replays_total",
    "Requests answered from an idempotency record instead of running again.",
)

_MESSAGES = {
    NotificationStatus.QUEUED: "notification queued",
    NotificationStatus.SCHEDULED: "notification scheduled until the user's quiet hours end",
    NotificationStatus.SKIPPED: "notification skipped",
}


@dataclass(frozen=True)
class SendResult:
    status_code: int
    body: dict[str, Any]
    replayed: bool = False


class SendService:
    def __init__(
        self,
        settings: GatewaySettings,
        *,
        store: NotificationStore,
        idempotency: IdempotencyStore,
        contacts: ContactDirectory,
        templates: TemplateLookup,
        outbox: Outbox,
    ) -> None:
        self.settings = settings
        self.store = store
        self.idempotency = idempotency
        self.contacts = contacts
        self.templates = templates
        self.outbox = outbox

    async def send(
        self,
        api_key: ApiKey,
        command: SendCommand,
        *,
        idempotency_key: str | None,
        fingerprint: str,
    ) -> SendResult:
        key = idempotency_key or command.request_id
        claim: Claim | None = None
        if key is not None:
            outcome = await self.idempotency.claim(api_key.id, key, fingerprint)
            if isinstance(outcome, Replay):
                REPLAYS.inc()
                return SendResult(outcome.status_code, outcome.body, replayed=True)
            claim = outcome
        try:
            return await self._accept(api_key, command, claim)
        except BaseException:
            if claim is not None:
                await self._release(claim)
            raise

    async def _release(self, claim: Claim) -> None:
        try:
            await self.idempotency.release(claim)
        except Exception as exc:  # the claim then expires after the pending timeout
            logger.warning("could not release idempotency claim: %s", type(exc).__name__)

    async def _accept(
        self, api_key: ApiKey, command: SendCommand, claim: Claim | None
    ) -> SendResult:
        """Enrich, decide, write the notification durably, then publish it."""
        contact = await self.contacts.get(command.user_id)
        channel = command.notification_type
        template = await self.templates.active(
            command.template_code, channel.value, command.locale or contact.locale
        )
        check_variables(template, command.variables)
        now = datetime.now(UTC)  # only to place quiet hours; every stored time is the database's
        check_expiry(command, now)
        decision = decide(contact, channel, now, template.category)
        notification_id = uuid.uuid4()
        correlation_id = get_correlation_id() or new_correlation_id()
        outbox_entry = None
        if decision.status is not NotificationStatus.SKIPPED:
            message = build_message(
                notification_id, command, contact, template, correlation_id, now
            )
            outbox_entry = self._outbox_entry(message, decision)
        body = accepted_body(notification_id, command, decision)
        accepted = await self.store.accept(
            new_notification(notification_id, api_key, command, template, decision),
            outbox_entry,
            IdempotencyCompletion(claim.key, claim.token, 202, body) if claim else None,
        )
        body["data"]["created_at"] = accepted.created_at
        body["data"]["expires_at"] = accepted.expires_at
        ACCEPTED.labels(channel.value, decision.status.value).inc()
        outbox_id = accepted.outbox_id
        if outbox_id is not None and outbox_entry is not None and outbox_entry.kind == "publish":
            await self.outbox.publish_inline(
                outbox_id,
                OutboxMessage(
                    routing_key=outbox_entry.routing_key,
                    body=outbox_entry.payload,
                    message_id=str(notification_id),
                    correlation_id=correlation_id,
                    priority=command.priority,
                ),
            )
        return SendResult(202, body)

    async def release_decision(self, message: NotificationMessage) -> Decision:
        """A held notification's fate when it comes due, from the user's current contact."""
        try:
            contact = await self.contacts.get(message.user_id)
        except UserNotFound:
            return Decision(NotificationStatus.SKIPPED, "user_deleted", "the user no longer exists")
        return decide(
            contact, message.notification_type, datetime.now(UTC), message.template.category
        )

    def _outbox_entry(self, message: NotificationMessage, decision: Decision) -> OutboxEntry:
        """Published at once (the relay takes it after a grace if the inline publish fails),
        or released when quiet hours end."""
        queued = decision.status is NotificationStatus.QUEUED
        return OutboxEntry(
            routing_key=message.notification_type.value,
            payload=message.to_bytes(),
            correlation_id=message.correlation_id,
            kind="publish" if queued else "release",
            available_at=None if queued else decision.release_at,
            grace_seconds=self.settings.outbox_inline_grace_seconds,
        )


def new_notification(
    notification_id: uuid.UUID,
    api_key: ApiKey,
    command: SendCommand,
    template: TemplateVersion,
    decision: Decision,
) -> NewNotification:
    return NewNotification(
        id=notification_id,
        api_key_id=api_key.id,
        request_id=command.request_id,
        notification_type=command.notification_type.value,
        user_id=command.user_id,
        template_code=command.template_code,
        template_version=template.version,
        locale=template.locale,
        priority=command.priority,
        status=decision.status.value,
        status_reason=decision.code,
        metadata=command.metadata,
        scheduled_for=decision.release_at,
        detail=decision.reason or "accepted",
        expires_at=command.expires_at,
        ttl_seconds=command.ttl_seconds,
    )


def accepted_body(
    notification_id: uuid.UUID, command: SendCommand, decision: Decision
) -> dict[str, Any]:
    """The 202's body, also kept by the idempotency record to replay; the accept statement
    fills in `created_at` and `expires_at` from the database's clock."""
    data = {
        "notification_id": str(notification_id),
        "status": decision.status.value,
        "request_id": command.request_id,
        "notification_type": command.notification_type.value,
        "created_at": None,
        "status_reason": decision.code,
        "scheduled_for": decision.release_at.isoformat() if decision.release_at else None,
        "expires_at": None,
    }
    message = _MESSAGES[decision.status]
    if decision.status is NotificationStatus.SKIPPED and decision.reason:
        message += f": {decision.reason}"
    return ok(data, message=message)


def check_expiry(command: SendCommand, now: datetime) -> None:
    """An `expires_at` already past is a mistake to report, not a notification to accept."""
    if command.expires_at is not None and command.expires_at <= now:
        raise ValidationFailed(
            "expires_at is in the past",
            details=[{"field": "expires_at", "message": "must be in the future"}],
        )


def check_variables(template: TemplateVersion, variables: dict[str, Any]) -> None:
    """Every variable the version uses must be given, and a link variable must hold an http,
    https or mailto URL, so a 202 never hides a render that cannot succeed. Set tests against
    what the template service found when the version was saved: the gateway never renders a
    template on its event loop."""
    missing = missing_variables(template.variables, variables)
    if missing:
        raise ValidationFailed(
            "missing variables: " + ", ".join(missing),
            code="missing_variables",
            details=[
                {"field": f"variables.{name}", "message": "required by the template"}
                for name in missing
            ],
        )
    unsafe = unsafe_links(template.link_variables, variables)
    if unsafe:
        raise ValidationFailed(
            "links must be http, https or mailto URLs: " + ", ".join(unsafe),
            code="unsafe_link",
            details=[
                {"field": f"variables.{path}", "message": "must be an http, https or mailto URL"}
                for path in unsafe
            ],
        )


def build_message(
    notification_id: uuid.UUID,
    command: SendCommand,
    contact: Contact,
    template: TemplateVersion,
    correlation_id: str,
    now: datetime,
) -> NotificationMessage:
    """The message workers get: the pinned template version and only the channel's address."""
    if command.notification_type.value == "email":
        recipient = Recipient(name=contact.name, email=contact.email)
    else:
        recipient = Recipient(
            name=contact.name,
            devices=[DeviceTarget(token=d.token, platform=d.platform) for d in contact.devices],
        )
    return NotificationMessage(
        notification_id=notification_id,
        notification_type=command.notification_type,
        user_id=command.user_id,
        recipient=recipient,
        template=TemplateRef(
            code=template.code,
            version=template.version,
            locale=template.locale,
            category=template.category,
        ),
        variables=command.variables,
        priority=command.priority,
        request_id=command.request_id,
        correlation_id=correlation_id,
        attempt=1,
        created_at=now,
        metadata=command.metadata,
        # An absolute expiry travels with the message; a `ttl_seconds` is counted by the
        # database from acceptance, and the status row (which every claim reads) decides.
        expires_at=command.expires_at,
    )
