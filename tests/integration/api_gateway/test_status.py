"""Status reads (by id or request id, scoped to the API key), the list, and the callback."""

from __future__ import annotations

import uuid
from typing import Any

from tests.integration.api_gateway.conftest import Running, send_body
from tests.integration.api_gateway.upstream import Upstream

SEND = "/v1/notifications/send"


async def _send(gw: Running, upstream: Upstream, **overrides: Any) -> dict[str, Any]:
    response = await gw.client.post(
        SEND, json=send_body(upstream.add_user(), **overrides), headers=gw.headers
    )
    assert response.status_code == 202, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def _internal(gw: Running) -> dict[str, str]:
    return {"X-Internal-API-Key": gw.gateway.settings.internal_api_key.get_secret_value()}


async def test_status_by_notification_id_or_request_id(gw: Running, upstream: Upstream) -> None:
    request_id = str(uuid.uuid4())  # legacy clients send uuid request ids
    sent = await _send(gw, upstream, request_id=request_id)
    for ref in (sent["notification_id"], request_id):
        response = await gw.client.get(f"/v1/notifications/{ref}/status", headers=gw.headers)
        assert response.status_code == 200, response.text
        data = response.json()["data"]
        assert data["notification_id"] == sent["notification_id"]
        assert data["request_id"] == request_id
        assert data["status"] == "queued"
        assert data["template_code"] == "welcome" and data["template_version"] == 3
        assert data["attempts"] == 0 and data["last_error"] is None
        assert data["delivered_at"] is None
        assert [h["status"] for h in data["history"]] == ["queued"]
        for field in ("user_id", "notification_type", "created_at", "updated_at"):
            assert field in data


async def test_another_api_key_sees_only_its_own(gw: Running, upstream: Upstream) -> None:
    sent = await _send(gw, upstream)
    other = await gw.new_key()
    response = await gw.client.get(
        f"/v1/notifications/{sent['notification_id']}/status", headers=other
    )
    assert response.status_code == 404
    assert response.json()["error"] == "notification_not_found"
    listed = await gw.client.get("/v1/notifications", headers=other)
    assert listed.json()["data"] == [] and listed.json()["meta"]["total"] == 0


async def test_unknown_notification_is_404(gw: Running) -> None:
    for ref in (str(uuid.uuid4()), "no-such-request"):
        response = await gw.client.get(f"/v1/notifications/{ref}/status", headers=gw.headers)
        assert response.status_code == 404
        assert response.json()["error"] == "notification_not_found"


async def test_list_is_paged_newest_first_and_filtered(gw: Running, upstream: Upstream) -> None:
    headers = await gw.new_key()
    sent = []
    for _ in range(3):
        response = await gw.client.post(SEND, json=send_body(upstream.add_user()), headers=headers)
        sent.append(response.json()["data"]["notification_id"])
    skipped = await gw.client.post(
        SEND, json=send_body(upstream.add_user(email_on=False)), headers=headers
    )
    skipped_id = skipped.json()["data"]["notification_id"]

    page1 = (await gw.client.get("/v1/notifications?limit=2", headers=headers)).json()
    assert [n["notification_id"] for n in page1["data"]] == [skipped_id, sent[2]]
    assert page1["meta"] == {
        "total": 4,
        "limit": 2,
        "page": 1,
        "total_pages": 2,
        "has_next": True,
        "has_previous": False,
    }
    page2 = (await gw.client.get("/v1/notifications?limit=2&page=2", headers=headers)).json()
    assert [n["notification_id"] for n in page2["data"]] == [sent[1], sent[0]]

    only_skipped = (await gw.client.get("/v1/notifications?status=skipped", headers=headers)).json()
    assert [n["notification_id"] for n in only_skipped["data"]] == [skipped_id]
    pushes = (
        await gw.client.get("/v1/notifications?notification_type=push", headers=headers)
    ).json()
    assert pushes["data"] == []
    bad = await gw.client.get("/v1/notifications?status=bogus", headers=headers)
    assert bad.status_code == 422


async def test_callback_moves_status_monotonically_with_history_once(
    gw: Running, upstream: Upstream
) -> None:
    sent = await _send(gw, upstream)
    nid = sent["notification_id"]
    url = "/api/v1/email/status/"

    pending = await gw.client.post(
        url, json={"notification_id": nid, "status": "pending"}, headers=_internal(gw)
    )
    assert pending.status_code == 200, pending.text
    # Only a worker's claim makes a notification `processing`: `pending` changes nothing.
    assert pending.json()["data"] == {
        "notification_id": nid,
        "status": "queued",
        "applied": False,
        "suppressed": False,
    }

    delivered = await gw.client.post(
        url,
        json={"notification_id": nid, "status": "delivered", "timestamp": "2026-11-25T10:00:00Z"},
        headers=_internal(gw),
    )
    assert delivered.json()["data"]["status"] == "delivered"

    # Late or replayed updates never move it backwards, nor duplicate history.
    for late in ("pending", "failed", "delivered"):
        response = await gw.client.post(
            url,
            json={"notification_id": nid, "status": late, "error": "late"},
            headers=_internal(gw),
        )
        assert response.status_code == 200
        assert response.json()["data"] == {
            "notification_id": nid,
            "status": "delivered",
            "applied": False,
            "suppressed": False,
        }

    status = (await gw.client.get(f"/v1/notifications/{nid}/status", headers=gw.headers)).json()
    assert status["data"]["status"] == "delivered"
    assert status["data"]["delivered_at"] is not None
    assert [h["status"] for h in status["data"]["history"]] == ["queued", "delivered"]


async def test_failed_callback_records_the_error(gw: Running, upstream: Upstream) -> None:
    nid = (await _send(gw, upstream))["notification_id"]
    response = await gw.client.post(
        "/api/v1/email/status",
        json={"notification_id": nid, "status": "failed", "error": "mailbox full"},
        headers=_internal(gw),
    )
    assert response.json()["data"]["status"] == "failed"
    status = (await gw.client.get(f"/v1/notifications/{nid}/status", headers=gw.headers)).json()
    assert status["data"]["last_error"] == "mailbox full"


async def test_callback_needs_the_internal_key_and_a_matching_channel(
    gw: Running, upstream: Upstream
) -> None:
    nid = (await _send(gw, upstream))["notification_id"]
    body = {"notification_id": nid, "status": "delivered"}
    no_key = await gw.client.post("/api/v1/email/status/", json=body, headers=gw.headers)
    assert no_key.status_code == 401
    wrong_channel = await gw.client.post("/api/v1/push/status/", json=body, headers=_internal(gw))
    assert wrong_channel.status_code == 422
    assert wrong_channel.json()["error"] == "channel_mismatch"
    unknown = await gw.client.post(
        "/api/v1/email/status/",
        json={"notification_id": str(uuid.uuid4()), "status": "delivered"},
        headers=_internal(gw),
    )
    assert unknown.status_code == 404
    bad_status = await gw.client.post(
        "/api/v1/email/status/", json={**body, "status": "read"}, headers=_internal(gw)
    )
    assert bad_status.status_code == 422
