"""One-click unsubscribe through the whole stack: a marketing email carries the RFC 8058
headers, posting its link turns marketing email off, the next one is skipped, and
transactional mail still arrives without them."""

from __future__ import annotations

import email
import email.policy
import re
import uuid
from typing import Any

import httpx
import pytest

from shared.settings import Settings
from tests.conftest import wait_for
from tests.e2e.test_notification_end_to_end import _send, _status


async def _register(settings: Settings) -> str:
    async with httpx.AsyncClient(base_url=settings.user_service_url, timeout=10) as client:
        response = await client.post(
            "/api/v1/users",
            json={
                "name": "Grace Hopper",
                "email": f"grace-{uuid.uuid4().hex[:10]}@example.com",
                "password": "a-long-unsubscribe-test-passphrase-42",
            },
        )
    assert response.status_code == 201, response.text
    user_id: str = response.json()["data"]["id"]
    return user_id


async def _ended(settings: Settings, notification_id: str) -> dict[str, Any] | None:
    status = await _status(settings, notification_id)
    return status if status["status"] in ("delivered", "skipped", "failed") else None


async def _raw_email(settings: Settings, marker: str) -> email.message.EmailMessage:
    inbox = f"http://127.0.0.1:{settings.inbox_http_port}"
    async with httpx.AsyncClient(base_url=inbox, timeout=5) as client:
        listing = (await client.get("/api/v1/messages")).json()
        found = [m for m in listing["messages"] if marker in m["Subject"]]
        assert len(found) == 1, listing
        raw = (await client.get(f"/api/v1/message/{found[0]['ID']}/raw")).content
    parsed = email.message_from_bytes(raw, policy=email.policy.compat32)
    assert isinstance(parsed, email.message.Message)
    return parsed  # type: ignore[return-value]


def _header(message: email.message.Message, name: str) -> str | None:
    value = message.get(name)
    return None if value is None else " ".join(str(value).split())  # unfolded


async def _send_and_end(
    settings: Settings, user_id: str, template_code: str, variables: dict[str, str]
) -> dict[str, Any]:
    accepted = await _send(
        settings,
        {
            "notification_type": "email",
            "user_id": user_id,
            "template_code": template_code,
            "variables": variables,
        },
        f"e2e-unsub-{uuid.uuid4().hex}",
    )
    return await wait_for(lambda: _ended(settings, accepted["notification_id"]), timeout=30)


@pytest.mark.usefixtures("stack")
async def test_one_click_unsubscribe_stops_marketing_and_keeps_transactional(
    stack_settings_fixture: Settings,
) -> None:
    settings = stack_settings_fixture
    user_id = await _register(settings)

    marker = uuid.uuid4().hex[:12]
    news = {"name": f"Grace {marker}", "news": "Compilers are here."}
    first = await _send_and_end(settings, user_id, "newsletter", news)
    assert first["status"] == "delivered", first
    raw = await _raw_email(settings, marker)
    assert _header(raw, "List-Unsubscribe-Post") == "List-Unsubscribe=One-Click"
    list_unsubscribe = _header(raw, "List-Unsubscribe")
    assert list_unsubscribe is not None
    links = re.findall(r"<([^>]+)>", list_unsubscribe)
    assert links and links[0].startswith(f"{settings.public_base_url}/u/"), list_unsubscribe
    assert user_id not in list_unsubscribe and "grace" not in list_unsubscribe.lower()

    async with httpx.AsyncClient(timeout=10) as client:
        # What a mail client does (RFC 8058): POST the https link with the one-click body.
        clicked = await client.post(
            links[0],
            content="List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert clicked.status_code == 200, clicked.text
        assert clicked.json()["data"]["unsubscribed"] is True
        flipped = "B" if links[0][-3] == "A" else "A"
        tampered = await client.post(links[0][:-3] + flipped + links[0][-2:])
        assert tampered.status_code == 404
        assert tampered.json()["error"] == "invalid_unsubscribe_token"

    second = await _send_and_end(settings, user_id, "newsletter", {**news, "name": "Again"})
    assert (second["status"], second["status_reason"]) == ("skipped", "opted_out"), second

    marker = uuid.uuid4().hex[:12]
    welcome = {"name": f"Grace {marker}", "link": "https://example.com/start"}
    receipt = await _send_and_end(settings, user_id, "welcome", welcome)
    assert receipt["status"] == "delivered", receipt
    transactional = await _raw_email(settings, marker)
    assert _header(transactional, "List-Unsubscribe-Post") is None
    assert _header(transactional, "List-Unsubscribe") is None
