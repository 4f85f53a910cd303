"""The client's hand-written models and calls against the committed gateway contract
(`docs/openapi/api-gateway.yml`, itself checked against the app by the OpenAPI drift test).

Instances are built from the contract's own schemas, the smallest it allows and the fullest,
and the client must read both; the client's send body must validate against the contract's
request schema; every path the client calls today must be in the contract with its method.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jsonschema
import pytest
from notifications_client import (
    TERMINAL_STATUSES,
    Accepted,
    Channel,
    FieldError,
    HistoryEntry,
    Notification,
    NotificationDetail,
    NotificationStatus,
    PageMeta,
    SendRequest,
)
from notifications_client import operations as ops
from notifications_client.client import DEFAULT_PAGE_SIZE
from notifications_client.operations import ListFilters
from pydantic import BaseModel

from tests.client.conftest import SPEC

SCHEMAS: dict[str, Any] = SPEC["components"]["schemas"]
MODELS: list[tuple[type[BaseModel], str]] = [
    (Accepted, "Accepted"),
    (Notification, "StatusSummary"),
    (NotificationDetail, "StatusDetail"),
    (HistoryEntry, "HistoryEntry"),
    (PageMeta, "PageMeta"),
    (FieldError, "FieldError"),
]
# Request fields of features announced but not in every gateway: sent only when used.
UPCOMING_REQUEST_FIELDS = {"send_at"}


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = SCHEMAS[schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def _nullable(schema: dict[str, Any]) -> bool:
    return any(option.get("type") == "null" for option in schema.get("anyOf", []))


def example(schema: dict[str, Any], *, full: bool) -> Any:
    """A value the schema allows: with `full`, every property set and no nulls; without,
    only the required properties, and null wherever null is allowed."""
    schema = _resolve(schema)
    if "anyOf" in schema:
        options = [o for o in schema["anyOf"] if o.get("type") != "null"]
        if not full and len(options) < len(schema["anyOf"]):
            return None
        return example(options[0], full=full)
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        required = set(schema.get("required", []))
        return {
            name: example(prop, full=full)
            for name, prop in schema.get("properties", {}).items()
            if full or name in required
        }
    if kind == "array":
        return [example(schema["items"], full=full)] if full else []
    if kind == "string":
        return {"uuid": str(uuid.uuid4()), "date-time": "2030-01-02T03:04:05.678+00:00"}.get(
            schema.get("format", ""), "text"
        )
    if kind == "integer":
        return 1
    if kind == "boolean":
        return True
    raise AssertionError(f"no example for {schema}")


@pytest.mark.parametrize(("model", "name"), MODELS, ids=[name for _, name in MODELS])
def test_the_model_declares_every_field_the_contract_sends(
    model: type[BaseModel], name: str
) -> None:
    undeclared = set(SCHEMAS[name]["properties"]) - set(model.model_fields)
    assert not undeclared, f"{model.__name__} lacks {sorted(undeclared)} of {name}"


@pytest.mark.parametrize(("model", "name"), MODELS, ids=[name for _, name in MODELS])
@pytest.mark.parametrize("full", [False, True], ids=["smallest", "fullest"])
def test_the_model_reads_what_the_contract_allows(
    model: type[BaseModel], name: str, full: bool
) -> None:
    instance = example(SCHEMAS[name], full=full)
    parsed = model.model_validate(instance)
    assert not parsed.model_extra  # every field landed in a declared attribute


@pytest.mark.parametrize(
    ("ours", "name"), [(NotificationStatus, "NotificationStatus"), (Channel, "Channel")]
)
def test_the_client_knows_every_value_of_the_contracts_enums(ours: Any, name: str) -> None:
    assert set(SCHEMAS[name]["enum"]) <= {member.value for member in ours}


def test_wait_stops_at_every_terminal_status_the_contract_has() -> None:
    ends = {"delivered", "failed", "skipped", "expired", "cancelled"}
    assert set(SCHEMAS["NotificationStatus"]["enum"]) & ends <= TERMINAL_STATUSES


def test_the_error_envelope_is_what_the_client_reads() -> None:
    assert set(SCHEMAS["ErrorEnvelope"]["properties"]) == {
        "success", "data", "error", "message", "meta", "details",
    }  # fmt: skip
    assert set(SCHEMAS["FieldError"]["required"]) == {"field", "message"}


def _request_schema() -> dict[str, Any]:
    return {**SCHEMAS["SendRequest"], "components": SPEC["components"]}


def test_the_send_body_validates_against_the_contract() -> None:
    upcoming = UPCOMING_REQUEST_FIELDS - set(SCHEMAS["SendRequest"]["properties"])
    declared = set(SendRequest.model_fields) - upcoming
    assert declared <= set(SCHEMAS["SendRequest"]["properties"])
    body = SendRequest(
        user_id=uuid.uuid4(),
        template_code="welcome",
        notification_type="push",
        variables={"name": "Ada"},
        request_id="r-1",
        priority="high",
        locale="en-GB",
        metadata={"campaign": "spring"},
        send_at=datetime.now(UTC) + timedelta(minutes=30),
        expires_at=datetime.now(UTC) + timedelta(hours=1),
    ).body()
    # Everything the contract knows is sent when set (`ttl_seconds` is the other way to say
    # `expires_at`: one or the other).
    assert set(body) == declared - {"ttl_seconds"}
    jsonschema.validate(body, _request_schema())
    with_ttl = SendRequest(user_id=uuid.uuid4(), template_code="welcome", ttl_seconds=60).body()
    jsonschema.validate(with_ttl, _request_schema())
    minimal = SendRequest(user_id=uuid.uuid4(), template_code="welcome").body()
    jsonschema.validate(minimal, _request_schema())


def _operation_in_spec(method: str, path: str) -> bool:
    for template, operations in SPEC["paths"].items():
        pattern = "^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"
        if re.match(pattern, path) and method.lower() in operations:
            return True
    return False


CURRENT_CALLS = {
    "send": ops.send(SendRequest(user_id=uuid.uuid4(), template_code="w"), "key"),
    "status": ops.status("a-request-id"),
    "list": ops.list_page(ListFilters(), 1, DEFAULT_PAGE_SIZE),
}


@pytest.mark.parametrize("name", sorted(CURRENT_CALLS))
def test_every_call_the_client_makes_today_is_in_the_contract(name: str) -> None:
    call = CURRENT_CALLS[name]
    assert _operation_in_spec(call.method, call.path), f"{call.method} {call.path}"


def test_the_list_query_is_the_contracts() -> None:
    operation = SPEC["paths"]["/v1/notifications"]["get"]
    params = {p["name"]: p for p in operation["parameters"]}
    sent = ListFilters(user_id=uuid.uuid4(), status="failed", channel="email").params()
    assert set(sent) | {"page", "limit"} <= set(params)
    assert params["limit"]["schema"]["maximum"] >= DEFAULT_PAGE_SIZE
    send = SPEC["paths"]["/v1/notifications/send"]["post"]
    assert "Idempotency-Key" in {p["name"] for p in send["parameters"]}
