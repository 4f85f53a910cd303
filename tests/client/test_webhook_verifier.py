"""The webhook verifier against deliveries signed by the `standardwebhooks` library itself, as
the gateway's dispatcher signs them (no gateway needed: the signature is the contract)."""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from notifications_client import WebhookVerificationFailed
from notifications_client.webhooks import WebhookVerifier
from standardwebhooks import Webhook


def _secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def _event() -> str:
    now = "2030-01-02T03:04:05+00:00"
    return json.dumps(
        {
            "type": "notification.delivered",
            "timestamp": now,
            "data": {
                "notification_id": str(uuid.uuid4()),
                "request_id": "r-1",
                "status": "delivered",
                "notification_type": "email",
                "user_id": str(uuid.uuid4()),
                "template_code": "welcome",
                "priority": 5,
                "created_at": now,
                "updated_at": now,
            },
        }
    )


def _headers(body: str, *keys: str, at: datetime | None = None) -> dict[str, str]:
    at = at or datetime.now(UTC)
    message_id = f"msg_{uuid.uuid4().hex}"
    signatures = [Webhook(key).sign(message_id, at, body) for key in keys]
    return {
        "Webhook-Id": message_id,
        "Webhook-Timestamp": str(int(at.timestamp())),
        "Webhook-Signature": " ".join(signatures),
    }


def test_a_signed_delivery_verifies_and_parses() -> None:
    secret, body = _secret(), _event()
    event = WebhookVerifier(secret).verify(body.encode(), _headers(body, secret))
    assert event.type == "notification.delivered"
    assert event.notification.status == "delivered"
    assert str(event.notification.notification_id) == json.loads(body)["data"]["notification_id"]


@pytest.mark.parametrize(
    "forge",
    ["tampered body", "another secret", "stale timestamp", "no headers", "malformed signature"],
)
def test_a_forged_or_stale_delivery_is_refused(forge: str) -> None:
    secret, body = _secret(), _event()
    headers = _headers(body, secret)
    if forge == "tampered body":
        body = body.replace("delivered", "failed")
    elif forge == "another secret":
        headers = _headers(body, _secret())
    elif forge == "stale timestamp":
        headers = _headers(body, secret, at=datetime.now(UTC) - timedelta(minutes=10))
    elif forge == "no headers":
        headers = {}
    else:
        headers["Webhook-Signature"] = "not-a-signature"
    with pytest.raises(WebhookVerificationFailed) as refused:
        WebhookVerifier(secret).verify(body, headers)
    assert refused.value.code == "invalid_signature"


def test_during_a_rotation_either_secret_verifies() -> None:
    old, new, body = _secret(), _secret(), _event()
    # The gateway signs with both while the old secret is still valid.
    assert WebhookVerifier(new).verify(body, _headers(body, old, new)).type
    # A receiver that holds both accepts deliveries signed with either.
    both = WebhookVerifier([old, new])
    assert both.verify(body, _headers(body, old)).type == "notification.delivered"
    assert both.verify(body, _headers(body, new)).type == "notification.delivered"
