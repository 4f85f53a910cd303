"""The message envelope, its JSON Schema and its proto mirror stay in step."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import pytest
from pydantic import BaseModel, ValidationError

from scripts.export_message_schema import SCHEMA_PATH, message_schema_text
from shared.messaging.message import DeviceTarget, NotificationMessage, Recipient, TemplateRef

PROTO = Path(__file__).resolve().parents[2] / "shared" / "proto" / "notification.proto"


def _proto_fields() -> dict[str, set[str]]:
    text = PROTO.read_text()
    messages: dict[str, set[str]] = {}
    for name, body in re.findall(r"message (\w+) \{(.*?)\n\}", text, re.S):
        messages[name] = set(
            re.findall(r"^\s+(?:optional |repeated )?[\w.]+ (\w+) = \d+;", body, re.M)
        )
    return messages


def _sample() -> NotificationMessage:
    return NotificationMessage(
        notification_id=uuid.uuid4(),
        notification_type="email",
        user_id=uuid.uuid4(),
        recipient=Recipient(name="Ada", email="ada@example.com"),
        template=TemplateRef(code="welcome", version=3, locale="en"),
        variables={"name": "Ada"},
        correlation_id="abc",
        created_at=datetime.now(UTC),
    )


def test_committed_json_schema_matches_the_model() -> None:
    assert SCHEMA_PATH.read_text() == message_schema_text(), (
        "run python -m scripts.export_message_schema"
    )


@pytest.mark.parametrize(
    "model", [NotificationMessage, Recipient, TemplateRef, DeviceTarget], ids=lambda m: m.__name__
)
def test_proto_mirrors_every_field(model: type[BaseModel]) -> None:
    assert _proto_fields()[model.__name__] == set(model.model_fields)


def test_a_message_validates_against_the_json_schema_and_round_trips() -> None:
    message = _sample()
    jsonschema.validate(json.loads(message.to_bytes()), json.loads(SCHEMA_PATH.read_text()))
    assert NotificationMessage.from_bytes(message.to_bytes()) == message


def test_unknown_fields_are_refused() -> None:
    body = json.loads(_sample().to_bytes())
    body["surprise"] = 1
    with pytest.raises(ValidationError):
        NotificationMessage.model_validate(body)
