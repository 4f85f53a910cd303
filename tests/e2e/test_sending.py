"""Send later and cancel through the whole stack: a cancel racing the release of a `send_at`
ends in exactly one of `cancelled` (no mail) or `delivered` (one mail), never both."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from shared.notification_status import TERMINAL
from shared.settings import Settings
from tests.conftest import wait_for


def _client(settings: Settings) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=settings.api_gateway_url,
        timeout=10,
        headers={"Authorization": f"Bearer {settings.demo_api_key.get_secret_value()}"},
    )


async def _mails_with(settings: Settings, marker: str) -> int:
    inbox = f"http://127.0.0.1:{settings.inbox_http_port}"
    async with httpx.AsyncClient(base_url=inbox, timeout=5) as client:
        listing = (await client.get("/api/v1/messages")).json()
    return sum(1 for m in listing["messages"] if marker in m["Subject"])


@pytest.mark.usefixtures("stack")
async def test_cancel_racing_the_release_is_cancelled_or_delivered_never_both(
    stack_settings_fixture: Settings, seeded: dict[str, Any]
) -> None:
    settings = stack_settings_fixture
    user_id = seeded["user_service"]["demo_user_id"]
    send_at = datetime.now(UTC) + timedelta(seconds=3)
    markers = [uuid.uuid4().hex[:12] for _ in range(6)]
    async with _client(settings) as client:
        ids = []
        for marker in markers:
            response = await client.post(
                "/v1/notifications/send",
                json={
                    "notification_type": "email",
                    "user_id": user_id,
                    "template_code": "welcome",
                    "variables": {"name": f"Ada {marker}", "link": "https://example.com/start"},
                    "send_at": send_at.isoformat(),
                },
            )
            assert response.status_code == 202, response.text
            assert response.json()["data"]["status"] == "scheduled"
            ids.append(response.json()["data"]["notification_id"])

        async def cancel_when_due(nid: str) -> int:
            answer = await client.delete(f"/v1/notifications/{nid}")
            assert answer.status_code in (200, 409), answer.text
            return answer.status_code

        async def final(nid: str) -> dict[str, Any] | None:
            data: dict[str, Any] = (await client.get(f"/v1/notifications/{nid}/status")).json()[
                "data"
            ]
            return data if data["status"] in TERMINAL else None

        async def released(nid: str) -> bool:
            data = (await client.get(f"/v1/notifications/{nid}/status")).json()["data"]
            return bool(data["status"] != "scheduled")

        # Half are cancelled long before their time, half the moment the release starts.
        early = await asyncio.gather(*(cancel_when_due(nid) for nid in ids[:3]))
        await wait_for(lambda: released(ids[3]), timeout=30, interval=0.01)
        late = await asyncio.gather(*(cancel_when_due(nid) for nid in ids[3:]))
        ends = [await wait_for(lambda nid=nid: final(nid), timeout=60) for nid in ids]

    assert early == [200, 200, 200]
    for code, end, marker in zip(early + late, ends, markers, strict=True):
        if end["status"] == "cancelled":
            assert code == 200
        else:
            assert (code, end["status"]) == (409, "delivered")
            await wait_for(lambda marker=marker: _mails_with(settings, marker), timeout=10)
    # Every cancelled one stays without mail after all the delivered ones arrived.
    for end, marker in zip(ends, markers, strict=True):
        expected = 1 if end["status"] == "delivered" else 0
        assert await _mails_with(settings, marker) == expected, end


@pytest.mark.usefixtures("stack")
async def test_a_push_delivered_before_its_deadline_sends_no_fallback_email(
    stack_settings_fixture: Settings, seeded: dict[str, Any]
) -> None:
    settings = stack_settings_fixture
    marker = uuid.uuid4().hex[:12]
    async with _client(settings) as client:
        response = await client.post(
            "/v1/notifications/send",
            json={
                "notification_type": "push",
                "user_id": seeded["user_service"]["demo_user_id"],
                "template_code": "welcome",
                "variables": {"name": f"Ada {marker}", "link": "https://example.com/start"},
                "fallback": {"channel": "email", "after_seconds": 3},
            },
        )
        assert response.status_code == 202, response.text
        accepted = response.json()["data"]

        async def final(nid: str) -> dict[str, Any] | None:
            data: dict[str, Any] = (await client.get(f"/v1/notifications/{nid}/status")).json()[
                "data"
            ]
            return data if data["status"] in TERMINAL else None

        push = await wait_for(lambda: final(accepted["notification_id"]), timeout=30)
        email = await wait_for(lambda: final(accepted["fallback"]["notification_id"]), timeout=30)

    assert push["status"] == "delivered" and push["fell_back_to"] == email["notification_id"]
    assert email["fallback_of"] == push["notification_id"]
    deadline = datetime.fromisoformat(accepted["fallback"]["scheduled_for"])
    if datetime.fromisoformat(push["delivered_at"]) < deadline:
        assert (email["status"], email["status_reason"]) == ("skipped", "primary_delivered")
        assert await _mails_with(settings, marker) == 0
    else:  # the push was late: the email went instead (this machine was slow)
        assert email["status"] == "delivered"
