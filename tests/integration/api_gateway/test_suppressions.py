"""The suppression list from the gateway's side: bounce and complaint reports through the
status callback, and the operator API that lists, adds and removes addresses.

That a suppressed address is never mailed is the email worker's part
(`tests/integration/email_service/test_email_worker.py`)."""

from __future__ import annotations

import secrets
import uuid
from typing import Any

from services.api_gateway.api_keys import store_key
from tests.integration.api_gateway.conftest import Running, send_body
from tests.integration.api_gateway.upstream import Upstream

CALLBACK = "/api/v1/email/status/"


async def _send_to(gw: Running, upstream: Upstream, address: str) -> str:
    user_id = upstream.add_user(email=address)
    response = await gw.client.post(
        "/v1/notifications/send", json=send_body(user_id), headers=gw.headers
    )
    assert response.status_code == 202, response.text
    notification_id: str = response.json()["data"]["notification_id"]
    return notification_id


def _internal(gw: Running) -> dict[str, str]:
    return {"X-Internal-API-Key": gw.gateway.settings.internal_api_key.get_secret_value()}


async def _admin(gw: Running) -> dict[str, str]:
    raw = "test-" + secrets.token_urlsafe(24)
    await store_key(gw.gateway.pool, raw, name="ops", scopes=("admin",))
    return {"Authorization": f"Bearer {raw}"}


async def _listed(gw: Running, address: str) -> list[dict[str, Any]]:
    response = await gw.client.get(
        "/v1/admin/suppressions", params={"address": address}, headers=await _admin(gw)
    )
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["data"]
    return items


async def test_a_bounce_report_fails_an_open_notification_and_suppresses_its_address(
    gw: Running, upstream: Upstream
) -> None:
    address = f"bounce-{uuid.uuid4().hex[:10]}@example.com"
    nid = await _send_to(gw, upstream, address)
    report = {"notification_id": nid, "status": "bounced", "error": "550 5.1.1 user unknown"}
    response = await gw.client.post(CALLBACK, json=report, headers=_internal(gw))
    assert response.status_code == 200, response.text
    assert response.json()["data"] == {
        "notification_id": nid,
        "status": "failed",
        "applied": True,
        "suppressed": True,
    }
    (entry,) = await _listed(gw, address)
    assert (entry["reason"], entry["notification_id"]) == ("hard_bounce", nid)
    assert entry["detail"] == "550 5.1.1 user unknown"


async def test_a_complaint_after_delivery_keeps_delivered_and_suppresses(
    gw: Running, upstream: Upstream
) -> None:
    address = f"Complains-{uuid.uuid4().hex[:10]}@Example.com"
    nid = await _send_to(gw, upstream, address)
    delivered = {"notification_id": nid, "status": "delivered"}
    assert (await gw.client.post(CALLBACK, json=delivered, headers=_internal(gw))).is_success
    complaint = {"notification_id": nid, "status": "complained"}
    response = await gw.client.post(CALLBACK, json=complaint, headers=_internal(gw))
    assert response.json()["data"]["status"] == "delivered"
    assert response.json()["data"]["suppressed"] is True
    (entry,) = await _listed(gw, address)
    assert (entry["address"], entry["reason"]) == (address.lower(), "complaint")


async def test_a_bounce_is_an_email_report_only(gw: Running, upstream: Upstream) -> None:
    nid = await _send_to(gw, upstream, "ada@example.com")
    response = await gw.client.post(
        "/api/v1/push/status/",
        json={"notification_id": nid, "status": "bounced"},
        headers=_internal(gw),
    )
    assert response.status_code == 422
    assert response.json()["error"] == "channel_mismatch"


async def test_operators_add_list_and_remove_suppressions(gw: Running) -> None:
    admin = await _admin(gw)
    address = f"manual_{uuid.uuid4().hex[:10]}@example.com"
    added = await gw.client.post(
        "/v1/admin/suppressions",
        json={"address": address, "detail": "asked by phone"},
        headers=admin,
    )
    assert added.status_code == 201, added.text
    assert added.json()["data"]["reason"] == "manual"
    again = await gw.client.post(
        "/v1/admin/suppressions", json={"address": address, "reason": "complaint"}, headers=admin
    )
    assert again.json()["data"]["reason"] == "manual"  # the first entry stays
    # `_` in the prefix is a character, not a wildcard.
    assert [e["address"] for e in await _listed(gw, "manual_")] != []
    assert await _listed(gw, "manualx") == []
    removed = await gw.client.delete(f"/v1/admin/suppressions/{address}", headers=admin)
    assert removed.status_code == 200
    gone = await gw.client.delete(f"/v1/admin/suppressions/{address}", headers=admin)
    assert (gone.status_code, gone.json()["error"]) == (404, "suppression_not_found")
    assert await _listed(gw, address) == []
    send_only = await gw.client.get("/v1/admin/suppressions", headers=gw.headers)
    assert send_only.status_code == 403
