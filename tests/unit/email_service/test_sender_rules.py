"""The email sender's rules that need no I/O: SMTP settings, failure classes, provider ids."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import aiosmtplib
import pytest

from services.email_service.sender import classify_smtp_error, list_unsubscribe, provider_id
from services.email_service.smtp_pool import SmtpConfigError, connection_options
from shared.messaging.delivery import PermanentFailure, TransientFailure
from shared.messaging.message import Channel, NotificationMessage, Recipient, TemplateRef
from shared.settings import Settings
from shared.unsubscribe import Unsubscribe, read_token


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


def _message(category: str) -> NotificationMessage:
    return NotificationMessage(
        notification_id=uuid.uuid4(),
        notification_type=Channel.EMAIL,
        user_id=uuid.uuid4(),
        recipient=Recipient(email="ada@example.com"),
        template=TemplateRef(code="news", version=1, locale="en", category=category),
        correlation_id="c",
        created_at=datetime.now(UTC),
    )


def test_only_non_transactional_mail_gets_an_unsubscribe_link() -> None:
    assert list_unsubscribe(settings(), _message("transactional")) is None
    message = _message("marketing")
    value = list_unsubscribe(settings(public_base_url="https://n.example.com/"), message)
    assert value is not None and value.startswith("<https://n.example.com/u/")
    token = value.removeprefix("<https://n.example.com/u/").removesuffix(">")
    secret = settings().unsubscribe_secret.get_secret_value()
    assert read_token(secret, token) == Unsubscribe(message.user_id, "email", "marketing")
    assert str(message.user_id) not in value and "ada" not in value


def test_the_mailto_choice_follows_the_link_when_configured() -> None:
    value = list_unsubscribe(
        settings(unsubscribe_mailto="leave@example.com"), _message("marketing")
    )
    assert value is not None
    link, mailto = value.split(", ")
    token = link.removeprefix("<http://127.0.0.1:8080/u/").removesuffix(">")
    assert mailto == f"<mailto:leave@example.com?subject=unsubscribe-{token}>"
