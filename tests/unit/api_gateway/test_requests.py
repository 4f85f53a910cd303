"""Request parsing: both send contracts, priorities, idempotency keys and fingerprints."""

from __future__ import annotations

import uuid

import pytest
from pydantic import ValidationError

from services.api_gateway.idempotency import fingerprint, parse_idempotency_key
from services.api_gateway.rate_limit import RateDecision
from services.api_gateway.schemas import LegacySendRequest, SendRequest
from shared.errors import BadRequest

USER = str(uuid.uuid4())


def _send(**fields: object) -> SendRequest:
    base: dict[str, object] = {"user_id": USER, "notification_type": "email", "template_code": "w"}
    return SendRequest.model_validate({**base, **fields})


@pytest.mark.parametrize(
    ("given", "expected"), [("low", 2), ("normal", 5), ("high", 8), (0, 0), (9, 9)]
)
def test_priority_words_and_numbers(given: object, expected: int) -> None:
    assert _send(priority=given).to_command().priority == expected


def test_priority_defaults_to_normal() -> None:
    assert _send().to_command().priority == 5


@pytest.mark.parametrize("bad", [10, -1, "urgent", True, 5.5, "5"])
def test_bad_priorities_are_refused(bad: object) -> None:
    with pytest.raises(ValidationError):
        _send(priority=bad)


def test_aliases_fill_in_and_must_agree() -> None:
    command = SendRequest.model_validate(
        {"user_id": USER, "channel": "push", "template_slug": "w"}
    ).to_command()
    assert command.notification_type.value == "push" and command.template_code == "w"
    assert _send(channel="email", template_slug="w").to_command().template_code == "w"
    with pytest.raises(ValidationError, match="disagree"):
        _send(channel="push")
    with pytest.raises(ValidationError, match="required"):
        SendRequest.model_validate({"user_id": USER, "template_code": "w"})


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(ValidationError):
        _send(extra_field=1)


def test_legacy_body_maps_to_the_same_command() -> None:
    command = LegacySendRequest.model_validate(
        {
            "notification_type": "push",
            "user_id": USER,
            "template_code": "w",
            "variables": {"name": "Ada", "link": "https://example.com/a"},
            "request_id": "r1",
            "priority": 3,
        }
    ).to_command()
    assert command.priority == 3 and command.request_id == "r1"
    assert command.variables == {"name": "Ada", "link": "https://example.com/a"}
    with pytest.raises(ValidationError):
        LegacySendRequest.model_validate(
            {
                "notification_type": "push",
                "user_id": USER,
                "template_code": "w",
                "variables": {"name": "Ada", "link": "not a url"},
            }
        )


@pytest.mark.parametrize(
    ("header", "expected"),
    [(None, None), ("abc", "abc"), ('"abc"', "abc"), ("  k-1  ", "k-1"), ("x" * 255, "x" * 255)],
)
def test_idempotency_key_forms(header: str | None, expected: str | None) -> None:
    assert parse_idempotency_key(header) == expected


@pytest.mark.parametrize("header", ["", '""', "x" * 256, "has space", "caf\u00e9", "tab\there"])
def test_bad_idempotency_keys_are_400(header: str) -> None:
    with pytest.raises(BadRequest) as raised:
        parse_idempotency_key(header)
    assert raised.value.code == "invalid_idempotency_key"


def test_fingerprint_ignores_key_order_but_not_values() -> None:
    a = {"b": 1, "a": {"y": [1, 2], "x": None}}
    b = {"a": {"x": None, "y": [1, 2]}, "b": 1}
    assert fingerprint(a) == fingerprint(b)
    assert fingerprint(a) != fingerprint({**a, "b": 2})
    assert fingerprint({"a": {"y": [2, 1], "x": None}, "b": 1}) != fingerprint(a)


def test_rate_decision_headers() -> None:
    allowed = RateDecision(True, 10, 9, 6, 0)
    assert allowed.headers() == {
        "RateLimit-Limit": "10",
        "RateLimit-Remaining": "9",
        "RateLimit-Reset": "6",
    }
    refused = RateDecision(False, 10, 0, 60, 6, refused_by="user")
    assert refused.headers()["Retry-After"] == "6"


@pytest.mark.parametrize(
    "fields",
    [
        {"request_id": "a\u0000b"},
        {"variables": {"x": ["ok", {"deep": "\ud800"}]}},
        {"metadata": {"n": float("nan")}},
        {"metadata": {"n": float("inf")}},
    ],
)
def test_unstorable_values_are_refused_at_the_edge(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        _send(**fields)


def test_deeply_nested_variables_are_refused() -> None:
    deep: dict[str, object] = {}
    node = deep
    for _ in range(40):
        node["x"] = {}
        node = node["x"]  # type: ignore[assignment]
    with pytest.raises(ValidationError, match="nested deeper"):
        _send(variables=deep)
