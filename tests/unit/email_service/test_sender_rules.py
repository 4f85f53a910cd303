"""The email sender's rules that need no I/O: SMTP settings, failure classes, provider ids."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import aiosmtplib
import pytest

from services.email_service.sender import classify_smtp_error, provider_id, unsubscribe_url
from services.email_service.smtp_pool import SmtpConfigError, connection_options
from shared.messaging.delivery import PermanentFailure, TransientFailure
from shared.messaging.message import Channel, NotificationMessage, Recipient, TemplateRef
from shared.settings import Settings


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("security", "port", "use_tls", "start_tls"),
    [("none", 1025, False, False), ("starttls", 587, False, True), ("tls", 465, True, False)],
)
def test_security_modes_are_explicit(
    security: str, port: int, use_tls: bool, start_tls: bool
) -> None:
    options = connection_options(settings(smtp_security=security, smtp_port=port))
    assert (options["use_tls"], options["start_tls"]) == (use_tls, start_tls)
    assert "password" not in options


def test_starttls_on_465_is_refused() -> None:
    with pytest.raises(SmtpConfigError, match="465"):
        connection_options(settings(smtp_security="starttls", smtp_port=465))


def test_credentials_come_as_a_pair() -> None:
    options = connection_options(settings(smtp_username="u", smtp_password="p"))
    assert (options["username"], options["password"]) == ("u", "p")
    with pytest.raises(SmtpConfigError):
        connection_options(settings(smtp_username="u"))


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (aiosmtplib.SMTPConnectError("refused"), TransientFailure),
        (aiosmtplib.SMTPServerDisconnected("gone"), TransientFailure),
        (aiosmtplib.SMTPReadTimeoutError("slow"), TransientFailure),
        (ConnectionRefusedError(111, "refused"), TransientFailure),
        (TimeoutError(), TransientFailure),
        (aiosmtplib.SMTPDataError(451, "try later"), TransientFailure),
        (aiosmtplib.SMTPSenderRefused(421, "busy", "a@b.c"), TransientFailure),
        (aiosmtplib.SMTPDataError(550, "rejected"), PermanentFailure),
        (aiosmtplib.SMTPDataError(554, "spam"), PermanentFailure),
        (aiosmtplib.SMTPAuthenticationError(535, "bad creds"), TransientFailure),
        (
            aiosmtplib.SMTPRecipientsRefused(
                [aiosmtplib.SMTPRecipientRefused(550, "no such user", "x@y.z")]
            ),
            PermanentFailure,
        ),
        (
            aiosmtplib.SMTPRecipientsRefused(
                [aiosmtplib.SMTPRecipientRefused(450, "greylisted", "x@y.z")]
            ),
            TransientFailure,
        ),
    ],
)
def test_smtp_errors_are_classified(error: BaseException, kind: type[Exception]) -> None:
    assert isinstance(classify_smtp_error(error), kind)


def test_the_provider_id_is_the_servers_queue_id() -> None:
    assert provider_id("OK: queued as 4F3A2B") == "4F3A2B"
    assert provider_id("2.0.0 Ok: queued as <abc@x>") == "abc@x"
    assert provider_id("OK") == "OK"


def test_the_unsubscribe_link_names_the_user() -> None:
    message = NotificationMessage(
        notification_id=uuid.uuid4(),
        notification_type=Channel.EMAIL,
        user_id=uuid.uuid4(),
        recipient=Recipient(email="a@example.com"),
        template=TemplateRef(code="welcome", version=1, locale="en"),
        correlation_id="c",
        created_at=datetime.now(UTC),
    )
    configured = settings(email_unsubscribe_url="https://example.com/unsub?u={user_id}")
    assert unsubscribe_url(configured, message) == f"https://example.com/unsub?u={message.user_id}"
    assert unsubscribe_url(settings(), message) is None
