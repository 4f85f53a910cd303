"""The email channel's sender: render the pinned version, build the message, send it over SMTP.

Every failure is classified once, here, for the shared consumer runtime:
- transient (retried with backoff): connection refused or dropped, timeouts, SMTP 4xx, SMTP
  authentication or TLS trouble (our configuration, fixable without touching the message),
  the template service being down. Those that say the server itself is in trouble (refused,
  dropped, timed out, 4xx outside RCPT) are `provider_down`: enough in a row pause the worker;
- uncertain (retried, counted): the connection failed after the message was handed over, so
  the server may have it. Every attempt carries the same `Message-ID`, so a copy that does
  arrive twice is recognisably the same message;
- permanent (to the DLQ): SMTP 5xx, an invalid or refused recipient, a missing template, a
  render error, a value that would inject a header. A recipient refused with `5.1.x` (no such
  mailbox) is a hard bounce: the address also goes on the suppression list, and every later
  send to it ends `skipped` (`suppressed`) before any SMTP connection.

A non-transactional message (`message.template.category`) carries `List-Unsubscribe` with a
signed one-click link to the gateway (`shared/unsubscribe.py`), and the mailto choice when
`UNSUBSCRIBE_MAILTO` is set; transactional mail carries neither.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import aiosmtplib
from opentelemetry.trace import SpanKind

from services.email_service.compose import (
    InvalidAddress,
    OutgoingEmail,
    UnsafeHeader,
    build_message,
    message_id_for,
)
from services.email_service.smtp_pool import OutcomeUnknown, SmtpPool
from shared.contracts import TRANSACTIONAL
from shared.messaging.delivery import (
    Attempt,
    DeliveryResult,
    PermanentFailure,
    SkipDelivery,
    TemplateSource,
    TransientFailure,
    UncertainDelivery,
    render_message,
)
from shared.messaging.message import NotificationMessage
from shared.settings import Settings
from shared.suppressions import SuppressionList, SuppressionReason
from shared.tracing import span
from shared.unsubscribe import Unsubscribe, make_token, unsubscribe_url

logger = logging.getLogger("services.email_service.sender")

_QUEUE_ID = re.compile(r"queued as\s+<?([^\s>]+)>?", re.IGNORECASE)
# RFC 3463 `5.1.x`: the address itself is bad (no such mailbox, bad domain...): a hard bounce.
_BAD_MAILBOX = re.compile(r"^\s*5\.1\.\d{1,3}\b")


class HardBounce(PermanentFailure):
    """A permanent recipient error (`5.1.x`): the address goes on the suppression list."""


class EmailSender:
    def __init__(
        self,
        settings: Settings,
        templates: TemplateSource,
        pool: SmtpPool,
        suppressions: SuppressionList,
    ) -> None:
        self.settings = settings
        self.templates = templates
        self.pool = pool
        self.suppressions = suppressions

    async def deliver(self, message: NotificationMessage, attempt: Attempt) -> DeliveryResult:
        address = message.recipient.email
        if not address:
            raise PermanentFailure("the message has no recipient email address")
        if await self.suppressions.suppressed(address):
            raise SkipDelivery("suppressed", "the address is on the suppression list")
        rendered = await self._render(message)
        outgoing = OutgoingEmail(
            from_address=self.settings.email_from_address,
            from_name=self.settings.email_from_name,
            to_address=message.recipient.email,
            to_name=message.recipient.name,
            subject=rendered.get("subject") or "",
            text=rendered.get("text_body"),
            html=rendered.get("html_body"),
            message_id=message_id_for(message.notification_id, self.settings.email_from_address),
            list_unsubscribe=list_unsubscribe(self.settings, message),
            headers=(("X-Notification-ID", str(message.notification_id)),),
        )
        with span(
            "smtp send",
            kind=SpanKind.CLIENT,
            attributes={
                "notification.id": str(message.notification_id),
                "notification.attempt": attempt.number,
                "server.address": self.settings.smtp_host,
                "server.port": self.settings.smtp_port,
            },
        ) as smtp:
            try:
                reply = await self.send(outgoing)
            except (TransientFailure, PermanentFailure) as exc:
                smtp.set_attribute("notification.failure", type(exc).__name__)
                if isinstance(exc, HardBounce):
                    await self._suppress(address, exc, message)
                raise
        return DeliveryResult(provider_message_id=provider_id(reply), detail=f"smtp: {reply}"[:300])

    async def _suppress(
        self, address: str, bounce: HardBounce, message: NotificationMessage
    ) -> None:
        await self.suppressions.add(
            address,
            SuppressionReason.HARD_BOUNCE,
            detail=bounce.reason,
            notification_id=message.notification_id,
        )
        logger.warning("notification %s hard-bounced; address suppressed", message.notification_id)

    async def send(self, outgoing: OutgoingEmail) -> str:
        """Build and send one message; the server's reply. Raises classified failures."""
        try:
            mime = build_message(outgoing)
        except (UnsafeHeader, InvalidAddress) as exc:
            raise PermanentFailure(str(exc)) from exc
        try:
            return await self.pool.send(
                mime, sender=outgoing.from_address, recipient=outgoing.to_address
            )
        except Exception as exc:
            raise classify_smtp_error(exc) from exc

    async def _render(self, message: NotificationMessage) -> dict[str, Any]:
        rendered = await render_message(self.templates, message)
        if not rendered.get("subject"):
            ref = message.template
            raise PermanentFailure(f"template {ref.code} v{ref.version} has no email subject")
        return rendered

    async def probe(self) -> bool:
        return await self.pool.probe()

    async def aclose(self) -> None:
        await self.pool.aclose()
        await self.templates.aclose()


def classify_smtp_error(exc: BaseException) -> TransientFailure | PermanentFailure:
    """An aiosmtplib (or socket) error as the runtime's failure kind."""
    if isinstance(exc, OutcomeUnknown):
        return UncertainDelivery(f"SMTP outcome unknown: {exc}", provider_down=True)
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [r.code for r in exc.recipients]
        detail = "; ".join(f"{r.code} {r.message}" for r in exc.recipients)
        if codes and all(code >= 500 for code in codes):
            if all(_BAD_MAILBOX.match(r.message) for r in exc.recipients):
                return HardBounce(f"recipient refused: {detail}")
            return PermanentFailure(f"recipient refused: {detail}")
        return TransientFailure(f"recipient deferred: {detail}")
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return TransientFailure(f"SMTP authentication failed ({exc.code})")
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        text = f"SMTP {exc.code} {exc.message}".strip()
        if 500 <= exc.code < 600:
            return PermanentFailure(text)
        return TransientFailure(text, provider_down=True)
    if isinstance(exc, aiosmtplib.SMTPConnectError | aiosmtplib.SMTPServerDisconnected):
        return TransientFailure(f"SMTP connection failed: {exc}", provider_down=True)
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return TransientFailure("SMTP timed out", provider_down=True)
    if isinstance(exc, OSError | aiosmtplib.SMTPException):
        return TransientFailure(f"SMTP error: {type(exc).__name__}: {exc}", provider_down=True)
    return TransientFailure(f"unexpected SMTP failure: {type(exc).__name__}")


def provider_id(reply: str) -> str:
    """The server's queue id from a 250 reply ("Ok: queued as 4F3A..."), else the reply."""
    match = _QUEUE_ID.search(reply)
    return match.group(1) if match else reply.strip()[:200]


def list_unsubscribe(settings: Settings, message: NotificationMessage) -> str | None:
    """The `List-Unsubscribe` value of a non-transactional message (None for transactional):
    the gateway's one-click URL, then the mailto choice if configured (RFC 2369 order: the
    client takes the first it can use)."""
    category = message.template.category
    if category == TRANSACTIONAL:
        return None
    request = Unsubscribe(user_id=message.user_id, channel="email", category=category)
    token = make_token(settings.unsubscribe_secret.get_secret_value(), request)
    links = [f"<{unsubscribe_url(settings.public_base_url, token)}>"]
    if settings.unsubscribe_mailto:
        links.append(f"<mailto:{settings.unsubscribe_mailto}?subject=unsubscribe-{token}>")
    return ", ".join(links)
