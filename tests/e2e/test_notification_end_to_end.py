"""One notification through all five services, over real HTTP, AMQP, SMTP and FCM HTTP v1."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from devtools.stack import Stack
from shared.settings import Settings
from tests.conftest import wait_for


async def _send(settings: Settings, body: dict[str, Any], correlation_id: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=settings.api_gateway_url, timeout=10) as client:
        response = await client.post(
            "/v1/notifications/send",
            json=body,
            headers={
                "Authorization": f"Bearer {settings.demo_api_key.get_secret_value()}",
                "X-Correlation-ID": correlation_id,
            },
        )
    assert response.status_code == 202, response.text
    assert response.headers["x-correlation-id"] == correlation_id
    data: dict[str, Any] = response.json()["data"]
    return data


async def _status(settings: Settings, notification_id: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=settings.api_gateway_url, timeout=10) as client:
        response = await client.get(
            f"/v1/notifications/{notification_id}/status",
            headers={"X-API-Key": settings.demo_api_key.get_secret_value()},
        )
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


async def _delivered(settings: Settings, notification_id: str) -> dict[str, Any] | None:
    status = await _status(settings, notification_id)
    assert status["status"] not in ("failed", "skipped"), status
    return status if status["status"] == "delivered" else None


@pytest.mark.usefixtures("stack")
async def test_an_email_reaches_the_inbox_and_the_status_says_delivered(
    stack_settings_fixture: Settings, seeded: dict[str, Any], stack: Stack
) -> None:
    settings = stack_settings_fixture
    correlation_id = f"e2e-{uuid.uuid4().hex}"
    marker = uuid.uuid4().hex[:12]
    accepted = await _send(
        settings,
        {
            "notification_type": "email",
            "user_id": seeded["user_service"]["demo_user_id"],
            "template_code": "welcome",
            "variables": {"name": f"Ada {marker}", "link": "https://example.com/start"},
            "request_id": str(uuid.uuid4()),
            "priority": "high",
            "metadata": {"campaign": "e2e"},
        },
        correlation_id,
    )
    assert accepted["status"] == "queued"

    status = await wait_for(lambda: _delivered(settings, accepted["notification_id"]), timeout=30)
    assert status["template_code"] == "welcome" and status["template_version"] >= 1
    assert [h["status"] for h in status["history"]][-1] == "delivered"

    inbox = f"http://127.0.0.1:{settings.inbox_http_port}"
    async with httpx.AsyncClient(base_url=inbox, timeout=5) as client:
        listing = (await client.get("/api/v1/messages")).json()
        found = [m for m in listing["messages"] if marker in m["Subject"]]
        assert len(found) == 1, listing
        assert found[0]["Subject"] == f"Welcome, Ada {marker}!"
        message = (await client.get(f"/api/v1/message/{found[0]['ID']}")).json()
    assert "https://example.com/start" in message["Text"]
    assert f"Ada {marker}" in message["HTML"]

    # The correlation id travelled from the HTTP request through the message to the worker.
    email_log = (stack.log_dir / "email_service.log").read_text()
    assert correlation_id in email_log


@pytest.mark.usefixtures("stack")
async def test_a_push_reaches_the_fcm_stand_in(
    stack_settings_fixture: Settings, seeded: dict[str, Any]
) -> None:
    settings = stack_settings_fixture
    marker = uuid.uuid4().hex[:12]
    accepted = await _send(
        settings,
        {
            "notification_type": "push",
            "user_id": seeded["user_service"]["demo_user_id"],
            "template_code": "welcome",
            "variables": {"name": f"Ada {marker}", "link": "https://example.com/start"},
        },
        f"e2e-{uuid.uuid4().hex}",
    )
    await wait_for(lambda: _delivered(settings, accepted["notification_id"]), timeout=30)
    async with httpx.AsyncClient(base_url=settings.fcm_base_url, timeout=5) as client:
        received = (await client.get("/emulator/messages")).json()
    matching = [m for m in _messages(received) if marker in str(m)]
    assert len(matching) == 1, received


def _messages(received: Any) -> list[Any]:
    if isinstance(received, dict):
        data = received.get("data", received)
        if isinstance(data, dict):
            return list(data.get("messages", []))
        return list(data)
    return list(received)
