"""Building outgoing mail: structure, ids, and header values that cannot inject headers."""

from __future__ import annotations

import email
import email.policy
import uuid
from dataclasses import replace

import pytest

from services.email_service.compose import (
    InvalidAddress,
    OutgoingEmail,
    UnsafeHeader,
    build_message,
    message_id_for,
)

BASE = OutgoingEmail(
    from_address="notifications@example.com",
    from_name="Notifications",
    to_address="ada@example.com",
    to_name="Ada Lovelace",
    subject="Welcome, Ada!",
    text="Hello Ada",
    html="<p>Hello <b>Ada</b></p>",
    message_id="<abc@example.com>",
)


def parse(outgoing: OutgoingEmail) -> email.message.EmailMessage:
    raw = build_message(outgoing).as_bytes()
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(parsed, email.message.EmailMessage)
    return parsed


def test_a_message_with_html_is_multipart_alternative_text_first() -> None:
    parsed = parse(BASE)
    assert parsed.get_content_type() == "multipart/alternative"
    parts = [p.get_content_type() for p in parsed.iter_parts()]
    assert parts == ["text/plain", "text/html"]
    assert parsed.get_body(("plain",)).get_content().strip() == "Hello Ada"  # type: ignore[union-attr]
    assert parsed["To"] == "Ada Lovelace <ada@example.com>"
    assert parsed["Message-ID"] == "<abc@example.com>"
    assert parsed["Date"]
    assert "List-Unsubscribe" not in parsed


def test_a_message_without_html_is_plain_text() -> None:
    parsed = parse(replace(BASE, html=None))
    assert parsed.get_content_type() == "text/plain"


def test_text_is_derived_from_html_when_missing() -> None:
    parsed = parse(replace(BASE, text=None))
    assert parsed.get_body(("plain",)).get_content().strip() == "Hello Ada"  # type: ignore[union-attr]


def test_non_ascii_subject_and_names_are_encoded_and_read_back() -> None:
    parsed = parse(replace(BASE, subject="Bienvenue, Zoë ✓", to_name="Zoë Ünal"))
    assert parsed["Subject"] == "Bienvenue, Zoë ✓"
    assert parsed["To"].addresses[0].display_name == "Zoë Ünal"


def test_message_id_is_derived_from_the_notification_id() -> None:
    notification_id = uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert (
        message_id_for(notification_id, "n@mail.example.com")
        == "<12345678-1234-5678-1234-567812345678@mail.example.com>"
    )


def test_list_unsubscribe_comes_with_one_click_post() -> None:
    value = "<https://example.com/u/abc>, <mailto:u@example.com?subject=unsubscribe-abc>"
    parsed = parse(replace(BASE, list_unsubscribe=value))
    assert " ".join(str(parsed["List-Unsubscribe"]).split()) == value
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    plain = parse(BASE)
    assert plain["List-Unsubscribe"] is None and plain["List-Unsubscribe-Post"] is None


@pytest.mark.parametrize(
    "change",
    [
        {"subject": "Hi\r\nBcc: victim@example.com"},
        {"subject": "Hi\nBcc: victim@example.com"},
        {"subject": "Hi\x00there"},
        {"subject": "=?UTF-8?Q?=0A?=Bcc: victim@example.com"},
        {"to_name": "Ada\r\nBcc: victim@example.com"},
        {"to_name": "=?utf-8?q?Ada=0D=0ABcc:_x@example.com?="},
        {"from_name": "Evil\nX: y"},
        {"list_unsubscribe": "<https://example.com/>\r\nBcc: x@example.com"},
        {"list_unsubscribe": "<mailto:x@example.com?subject==?utf-8?q?=0A?=>"},
    ],
)
def test_values_that_could_inject_a_header_are_refused(change: dict[str, str]) -> None:
    with pytest.raises(UnsafeHeader):
        build_message(replace(BASE, **change))


@pytest.mark.parametrize(
    "address",
    [
        "not-an-address",
        "ada@",
        "@example.com",
        "ada@example",
        "ada lovelace@example.com",
        "ada@example.com, eve@example.com",
        "Ada <ada@example.com>",
        "ada@@example.com",
        "a..b@example.com",
        "ada@example.com\r\nBcc: eve@example.com",
        "x" * 65 + "@example.com",
    ],
)
def test_invalid_recipients_are_refused(address: str) -> None:
    with pytest.raises((InvalidAddress, UnsafeHeader)):
        build_message(replace(BASE, to_address=address))
