"""The send use case: from a validated command to a durable notification and a 202.

Order: the route has validated and rate-limited; here come idempotency, the schedule check of a
`send_at`, enrichment (contact, active template, a render check), the user's preferences (or,
for a `send_at`, a hold whose release reads them then), then one accept statement
(status row + history + idempotency record + outbox row) and the inline publish. A failure
before the accept releases the idempotency claim, so a retry runs afresh.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
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
    Accepted,
    CollapseWindow,
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
SEND_AT = "send_at"
"""The `status_reason` of a notification held for its `send_at`."""
MAX_SEND_AHEAD = timedelta(days=365)
FALLBACK = "fallback"
"""The `status_reason` of a fallback waiting for its send's deadline."""
COLLAPSED = "collapsed"
"""The `status_reason` of a send that fell into another's collapse window."""


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
            if command.channels:
                return await self._accept_group(api_key, command, claim)
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
        now = datetime.now(UTC)  # only to place quiet hours; every stored time is the database's
        check_schedule(command, now)
        contact = await self.contacts.get(command.user_id)
        channel = command.notification_type
        template = await self.templates.active(
            command.template_code, channel.value, command.locale or contact.locale
        )
        check_variables(template, command.variables)
        check_expiry(command, now)
        decision = (
            decide(contact, channel, now, template.category)
            if command.send_at is None
            else later(command)
        )
        if command.fallback_channel is not None:
            return await self._accept_with_fallback(
                api_key, command, claim, (contact, template, decision), now
            )
        notification_id = uuid.uuid4()
        correlation_id = get_correlation_id() or new_correlation_id()
        outbox_entry = None
        if decision.status is not NotificationStatus.SKIPPED:
            message = build_message(
                notification_id, command, contact, template, correlation_id, now
            )
            outbox_entry = self._outbox_entry(message, decision)
        body = accepted_body(notification_id, command, decision)
        notification = new_notification(notification_id, api_key, command, template, decision)
        if command.broadcast_id is not None:  # a topic's fan-out: the row names its broadcast
            notification = replace(notification, broadcast_id=command.broadcast_id)
            return await self._write_many(
                [(notification, outbox_entry)], body, claim, (body["data"],)
            )
        if command.collapse_key is None or decision.status is NotificationStatus.SKIPPED:
            accepted = await self.store.accept(notification, outbox_entry, _completion(claim, body))
        else:
            accepted, body, outbox_entry = await self._accept_collapsing(
                notification, outbox_entry, claim, body, (api_key, command, template)
            )
        body["data"]["created_at"] = accepted.created_at
        body["data"]["expires_at"] = accepted.expires_at
        ACCEPTED.labels(channel.value, body["data"]["status"]).inc()
        outbox_id = accepted.outbox_id
        if outbox_id is not None and outbox_entry is not None and outbox_entry.kind == "publish":
            await self._publish(outbox_id, outbox_entry, notification_id, command.priority)
        return SendResult(202, body)

    async def _accept_collapsing(
        self,
        notification: NewNotification,
        entry: OutboxEntry | None,
        claim: Claim | None,
        body: dict[str, Any],
        send: tuple[ApiKey, SendCommand, TemplateVersion],
    ) -> tuple[Accepted, dict[str, Any], OutboxEntry | None]:
        """Open the collapse window, or fall into the one open: then this send is written as
        `skipped` (`collapsed`) with no message, and its answer names the window's notification."""
        api_key, command, template = send
        assert command.collapse_key is not None and command.collapse_window_seconds is not None

        def collapsed(head: uuid.UUID) -> tuple[NewNotification, IdempotencyCompletion | None]:
            return (
                new_notification(notification.id, api_key, command, template, collapse(head)),
                _completion(claim, collapsed_body(notification.id, command, head)),
            )

        accepted, head = await self.store.accept_collapsing(
            notification,
            entry,
            _completion(claim, body),
            CollapseWindow(command.collapse_key, command.collapse_window_seconds),
            collapsed,
        )
        if head is None:
            return accepted, body, entry
        return accepted, collapsed_body(notification.id, command, head), None

    async def _accept_with_fallback(
        self,
        api_key: ApiKey,
        command: SendCommand,
        claim: Claim | None,
        primary: tuple[Contact, TemplateVersion, Decision],
        now: datetime,
    ) -> SendResult:
        """The send and its fallback, two rows of one accept statement. The fallback waits as
        `scheduled` until the send's deadline and the relay releases it only if the send was
        not delivered; a send skipped at acceptance (no device, channel off) falls back now."""
        contact, template, decision = primary
        assert command.fallback_channel is not None and command.fallback_after_seconds is not None
        # Without the request id, which names the send itself in status lookups.
        other = replace(
            command,
            notification_type=command.fallback_channel,
            fallback_channel=None,
            request_id=None,
        )
        other_template = await self.templates.active(
            command.template_code, other.notification_type.value, command.locale or contact.locale
        )
        check_variables(other_template, command.variables)
        primary_id, fallback_id = uuid.uuid4(), uuid.uuid4()
        if decision.status is NotificationStatus.SKIPPED:
            other_decision = decide(contact, other.notification_type, now, other_template.category)
        else:
            deadline = (decision.release_at or now) + timedelta(
                seconds=command.fallback_after_seconds
            )
            other_decision = Decision(
                NotificationStatus.SCHEDULED,
                FALLBACK,
                f"sent if {primary_id} is not delivered by {deadline.isoformat()}",
                deadline,
            )
        correlation_id = get_correlation_id() or new_correlation_id()
        rows: list[tuple[NewNotification, OutboxEntry | None]] = []
        for nid, cmd, tmpl, dec in (
            (primary_id, command, template, decision),
            (fallback_id, other, other_template, other_decision),
        ):
            entry = None
            if dec.status is not NotificationStatus.SKIPPED:
                message = build_message(nid, cmd, contact, tmpl, correlation_id, now)
                entry = self._outbox_entry(message, dec)
            rows.append((new_notification(nid, api_key, cmd, tmpl, dec), entry))
        rows[0] = (replace(rows[0][0], fell_back_to=fallback_id), rows[0][1])
        rows[1] = (replace(rows[1][0], fallback_of=primary_id), rows[1][1])
        body = accepted_body(primary_id, command, decision)
        body["data"]["fallback"] = accepted_body(fallback_id, other, other_decision)["data"]
        return await self._write_many(rows, body, claim, (body["data"], body["data"]["fallback"]))

    async def _write_many(
        self,
        rows: list[tuple[NewNotification, OutboxEntry | None]],
        body: dict[str, Any],
        claim: Claim | None,
        timed: tuple[dict[str, Any], ...],
    ) -> SendResult:
        """Accept several notifications in one statement, fill the database's times into the
        parts of the answer that show them, then publish what is due now."""
        accepted = await self.store.accept_group(rows, _completion(claim, body))
        for data in timed:
            data["created_at"] = accepted.created_at
            data["expires_at"] = accepted.expires_at
        await asyncio.gather(
            *(
                self._publish(accepted.outbox_ids[n.id], entry, n.id, n.priority)
                for n, entry in rows
                if entry is not None and entry.kind == "publish" and n.id in accepted.outbox_ids
            )
        )
        for n, _ in rows:
            ACCEPTED.labels(n.notification_type, n.status).inc()
        return SendResult(202, body)

    async def _accept_group(
        self, api_key: ApiKey, command: SendCommand, claim: Claim | None
    ) -> SendResult:
        """One notification per channel, each decided on its own (a push to a user with no
        device is `skipped` while the email goes), written by one statement."""
        now = datetime.now(UTC)
        check_schedule(command, now)
        contact = await self.contacts.get(command.user_id)
        locale = command.locale or contact.locale
        templates = [
            await self.templates.active(command.template_code, channel.value, locale)
            for channel in command.channels
        ]
        for template in templates:
            check_variables(template, command.variables)
        check_expiry(command, now)
        group_id = uuid.uuid4()
        correlation_id = get_correlation_id() or new_correlation_id()
        rows: list[tuple[NewNotification, OutboxEntry | None]] = []
        items: list[dict[str, Any]] = []
        for channel, template in zip(command.channels, templates, strict=True):
            single = replace(command, notification_type=channel, channels=())
            decision = (
                decide(contact, channel, now, template.category)
                if command.send_at is None
                else later(single)
            )
            notification_id = uuid.uuid4()
            entry = None
            if decision.status is not NotificationStatus.SKIPPED:
                message = build_message(
                    notification_id, single, contact, template, correlation_id, now
                )
                entry = self._outbox_entry(message, decision)
            notification = new_notification(notification_id, api_key, single, template, decision)
            rows.append((replace(notification, group_id=group_id), entry))
            items.append(accepted_body(notification_id, single, decision)["data"])
        body = ok(
            {
                "group_id": str(group_id),
                "request_id": command.request_id,
                "created_at": None,
                "expires_at": None,
                "notifications": items,
            },
            message=f"{len(items)} notifications accepted",
        )
        return await self._write_many(rows, body, claim, (body["data"], *items))

    async def _publish(
        self, outbox_id: int, entry: OutboxEntry, notification_id: uuid.UUID, priority: int
    ) -> None:
        await self.outbox.publish_inline(
            outbox_id,
            OutboxMessage(
                routing_key=entry.routing_key,
                body=entry.payload,
                message_id=str(notification_id),
                correlation_id=entry.correlation_id,
                priority=priority,
            ),
        )

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


def _completion(claim: Claim | None, body: dict[str, Any]) -> IdempotencyCompletion | None:
    return IdempotencyCompletion(claim.key, claim.token, 202, body) if claim else None


def collapse(head: uuid.UUID) -> Decision:
    return Decision(NotificationStatus.SKIPPED, COLLAPSED, f"collapsed into {head}")


def collapsed_body(
    notification_id: uuid.UUID, command: SendCommand, head: uuid.UUID
) -> dict[str, Any]:
    body = accepted_body(notification_id, command, collapse(head))
    body["data"]["collapsed_into"] = str(head)
    return body


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
    if command.collapse_key is not None:
        data["collapsed_into"] = None
    message = _MESSAGES[decision.status]
    if decision.code == SEND_AT:
        message = "notification scheduled for its send_at"
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


def check_schedule(command: SendCommand, now: datetime) -> None:
    """A `send_at` must be ahead, within a year, and before the notification would expire."""
    send_at = command.send_at
    if send_at is None:
        return
    if send_at <= now:
        raise ValidationFailed(
            "send_at is in the past",
            code="send_at_in_past",
            details=[{"field": "send_at", "message": "must be in the future"}],
        )
    if send_at > now + MAX_SEND_AHEAD:
        raise ValidationFailed(
            "send_at is more than a year ahead",
            code="send_at_too_far",
            details=[{"field": "send_at", "message": "must be at most 365 days ahead"}],
        )
    expires_at = command.expires_at
    if expires_at is None and command.ttl_seconds is not None:
        expires_at = now + timedelta(seconds=command.ttl_seconds)
    if expires_at is not None and expires_at <= send_at:
        raise ValidationFailed(
            "the notification would expire before its send_at",
            code="send_at_after_expiry",
            details=[{"field": "send_at", "message": "must be before expires_at (or the ttl)"}],
        )


def later(command: SendCommand) -> Decision:
    """Held until `send_at`: preferences, quiet hours and the contact are read at release, by
    the same relay step that releases quiet-hours holds (`release_decision`)."""
    assert command.send_at is not None
    when = command.send_at.astimezone(UTC)
    return Decision(
        NotificationStatus.SCHEDULED, SEND_AT, f"scheduled for {when.isoformat()}", when
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
