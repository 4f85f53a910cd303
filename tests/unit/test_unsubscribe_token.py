"""The unsubscribe token: it names the user, channel and category, verifies only with its own
secret and its own bytes, and reveals no address or name."""

from __future__ import annotations

import base64
import uuid

import pytest
from pydantic import ValidationError

from shared.contracts import Contact
from shared.messaging.message import Channel, NotificationMessage, Recipient, TemplateRef
from shared.messaging.policy import Skip, apply_policy
from shared.settings import Settings
from shared.unsubscribe import (
    InvalidUnsubscribeToken,
    Unsubscribe,
    make_token,
    read_token,
    unsubscribe_url,
)

SECRET = "s" * 40
ADA = Unsubscribe(uuid.uuid4(), "email", "marketing")


def _raw(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def _token(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_a_token_round_trips_and_is_url_safe() -> None:
    token = make_token(SECRET, ADA)
    assert read_token(SECRET, token) == ADA
    assert token.replace("-", "").replace("_", "").isalnum()
    assert make_token(SECRET, ADA) == token  # the same link every time
    assert unsubscribe_url("https://n.example.com/", token) == f"https://n.example.com/u/{token}"


def test_every_tampered_byte_is_refused() -> None:
    raw = _raw(make_token(SECRET, ADA))
    for index in range(len(raw)):
        flipped = bytearray(raw)
        flipped[index] ^= 0x01
        with pytest.raises(InvalidUnsubscribeToken):
            read_token(SECRET, _token(bytes(flipped)))


def test_another_secret_does_not_verify() -> None:
    with pytest.raises(InvalidUnsubscribeToken):
        read_token("t" * 40, make_token(SECRET, ADA))


def test_another_users_token_cannot_be_made_from_yours() -> None:
    """Swapping the user id (or the category) keeps the MAC of the original: refused."""
    raw = _raw(make_token(SECRET, ADA))
    other = uuid.uuid4()
    with pytest.raises(InvalidUnsubscribeToken):
        read_token(SECRET, _token(other.bytes + raw[16:]))
    bob = make_token(SECRET, Unsubscribe(other, "email", "marketing"))
    assert read_token(SECRET, bob).user_id == other
    assert _raw(bob)[-16:] != raw[-16:]


@pytest.mark.parametrize(
    "token", ["", "a", "!!!!", "x" * 201, "é" * 10, _token(b"\x00" * 31), _token(b"\x00" * 64)]
)
def test_malformed_tokens_are_refused_alike(token: str) -> None:
    with pytest.raises(InvalidUnsubscribeToken) as refused:
        read_token(SECRET, token)
    assert (refused.value.status_code, refused.value.code) == (404, "invalid_unsubscribe_token")


def test_the_token_holds_no_readable_personal_data() -> None:
    raw = _raw(make_token(SECRET, ADA))
    # Exactly an opaque id, the channel, the category and the MAC: no address, no name.
    assert raw[:-16] == ADA.user_id.bytes + b"\x05email\x09marketing"
    assert len(raw) == 16 + 1 + len("email") + 1 + len("marketing") + 16


def _message(category: str) -> NotificationMessage:
    return NotificationMessage.model_validate(
        {
            "notification_id": str(uuid.uuid4()),
            "notification_type": Channel.EMAIL,
            "user_id": str(ADA.user_id),
            "recipient": Recipient(email="ada@example.com"),
            "template": TemplateRef(code="news", version=1, locale="en", category=category),
            "correlation_id": "c",
            "created_at": "2026-12-08T00:00:00Z",
        }
    )


def test_the_delivery_policy_skips_an_opted_out_category_only() -> None:
    contact = Contact.model_validate(
        {
            "user_id": str(ADA.user_id),
            "name": "Ada",
            "email": "ada@example.com",
            "locale": "en",
            "timezone": "UTC",
            "preferences": {"categories": {"marketing": {"email": False}}},
        }
    )
    assert apply_policy(_message("marketing"), contact) == Skip(
        "opted_out", "the user turned off marketing email"
    )
    assert isinstance(apply_policy(_message("transactional"), contact), NotificationMessage)


@pytest.mark.parametrize(
    "values",
    [
        {"public_base_url": "ftp://example.com"},
        {"public_base_url": "https://example.com/\r\nBcc: x@example.com"},
        {"public_base_url": "https://example.com/a>, <https://evil.example"},
        {"unsubscribe_mailto": "leave@example.com?subject=x"},
        {"unsubscribe_mailto": "leave@example.com\r\nBcc: x@example.com"},
    ],
)
def test_settings_that_would_break_the_header_are_refused(values: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        Settings(_env_file=None, **values)  # type: ignore[arg-type]
