"""Several channels in one send: one notification per channel, one accept, one group."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.conftest import wait_for
from tests.integration.api_gateway.conftest import Running, Tap, send_body
from tests.integration.api_gateway.upstream import Upstream

DEVICE = [{"token": "tok-group", "platform": "android"}]


def group_body(user_id: uuid.UUID, **overrides: Any) -> dict[str, Any]:
    body = send_body(user_id, **{"channels": ["push", "email"], **overrides})
    del body["notification_type"]
    return body


async def _count(gw: Running, user_id: uuid.UUID) -> int:
    count: int = await gw.gateway.pool.fetchval(
        "SELECT count(*) FROM api_gateway.notification_statuses WHERE user_id = $1", user_id
    )
    return count


async def test_one_send_makes_a_notification_per_channel_linked_by_a_group(
    gw: Running, upstream: Upstream, tap: Tap
) -> None:
    user_id = upstream.add_user(devices=DEVICE)
    response = await gw.client.post(
        "/v1/notifications/send",
        json=group_body(user_id, request_id="both-" + uuid.uuid4().hex),
        headers=gw.headers,
    )

    assert response.status_code == 202, response.text
    data = response.json()["data"]
    group_id = data["group_id"]
    assert [n["notification_type"] for n in data["notifications"]] == ["push", "email"]
    assert [n["status"] for n in data["notifications"]] == ["queued", "queued"]
    assert all(n["created_at"] == data["created_at"] is not None for n in data["notifications"])
    ids = [n["notification_id"] for n in data["notifications"]]

    async def both_published() -> bool:
        await tap.drain()
        return set(ids) <= set(tap.ids())

    await wait_for(both_published, timeout=10)
    assert sorted(m.routing_key for m in tap.messages) == ["email", "push"]

    group = await gw.client.get(f"/v1/notifications/groups/{group_id}", headers=gw.headers)
    assert group.status_code == 200, group.text
    shown = group.json()["data"]
    assert shown["group_id"] == group_id
    assert sorted(n["notification_id"] for n in shown["notifications"]) == sorted(ids)
    assert all(n["group_id"] == group_id and n["history"] for n in shown["notifications"])
    single = await gw.client.get(f"/v1/notifications/{ids[0]}/status", headers=gw.headers)
    assert single.json()["data"]["group_id"] == group_id


async def test_each_channel_is_decided_on_its_own(gw: Running, upstream: Upstream) -> None:
    user_id = upstream.add_user()  # no device: the push is skipped, the email goes
    response = await gw.client.post(
        "/v1/notifications/send", json=group_body(user_id), headers=gw.headers
    )
    items = response.json()["data"]["notifications"]
    assert [(n["status"], n["status_reason"]) for n in items] == [
        ("skipped", "no_devices"),
        ("queued", None),
    ]


async def test_a_replay_returns_the_same_group_and_writes_nothing(
    gw: Running, upstream: Upstream, tap: Tap
) -> None:
    user_id = upstream.add_user(devices=DEVICE)
    body = group_body(user_id, request_id="replay-" + uuid.uuid4().hex)
    first = await gw.client.post("/v1/notifications/send", json=body, headers=gw.headers)
    again = await gw.client.post("/v1/notifications/send", json=body, headers=gw.headers)

    assert again.status_code == 202 and again.headers["Idempotency-Replayed"] == "true"
    assert again.json() == first.json()
    assert await _count(gw, user_id) == 2
    await tap.drain()
    assert len(tap.ids()) == 2


async def test_a_single_channel_answer_keeps_its_shape(gw: Running, upstream: Upstream) -> None:
    user_id = upstream.add_user()
    response = await gw.client.post(
        "/v1/notifications/send", json=send_body(user_id), headers=gw.headers
    )
    data = response.json()["data"]
    assert set(data) == {
        "notification_id",
        "status",
        "request_id",
        "notification_type",
        "created_at",
        "status_reason",
        "scheduled_for",
        "expires_at",
    }


async def test_bad_channel_lists_are_422_and_a_missing_template_writes_nothing(
    gw: Running, upstream: Upstream
) -> None:
    user_id = upstream.add_user(devices=DEVICE)
    for body in (
        send_body(user_id, channels=["push", "email"]),  # and notification_type
        group_body(user_id, channels=["email", "email"]),
        group_body(user_id, channels=[]),
        group_body(user_id, channels=["sms"]),
    ):
        response = await gw.client.post("/v1/notifications/send", json=body, headers=gw.headers)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["error"] == "validation_error"

    upstream.add_template("email_only", "email")
    body = group_body(user_id, template_code="email_only", request_id="t-" + uuid.uuid4().hex)
    response = await gw.client.post("/v1/notifications/send", json=body, headers=gw.headers)
    assert response.status_code == 404 and response.json()["error"] == "template_not_found"
    assert await _count(gw, user_id) == 0
    # The idempotency claim was released: once the template exists, the same request goes.
    upstream.add_template("email_only", "push")
    retried = await gw.client.post("/v1/notifications/send", json=body, headers=gw.headers)
    assert retried.status_code == 202, retried.text
    assert "Idempotency-Replayed" not in retried.headers


async def test_a_group_can_be_sent_later_and_is_private_to_its_api_key(
    gw: Running, upstream: Upstream
) -> None:
    user_id = upstream.add_user(devices=DEVICE)
    send_at = datetime.now(UTC) + timedelta(hours=1)
    response = await gw.client.post(
        "/v1/notifications/send",
        json=group_body(user_id, send_at=send_at.isoformat()),
        headers=gw.headers,
    )
    data = response.json()["data"]
    assert [n["status"] for n in data["notifications"]] == ["scheduled", "scheduled"]
    assert {datetime.fromisoformat(n["scheduled_for"]) for n in data["notifications"]} == {send_at}

    other = await gw.new_key()
    for headers, code in ((other, 404), (gw.headers, 200)):
        got = await gw.client.get(f"/v1/notifications/groups/{data['group_id']}", headers=headers)
        assert got.status_code == code, got.text
    missing = await gw.client.get(f"/v1/notifications/groups/{uuid.uuid4()}", headers=gw.headers)
    assert missing.json()["error"] == "group_not_found"
