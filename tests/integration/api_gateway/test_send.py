"""`POST /v1/notifications/send` and `POST /api/v1/notifications/`: validation, enrichment,
preferences, persistence and the published message."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from redis.asyncio import Redis

from shared.contacts import CHANGES_CHANNEL
from shared.messaging.message import NotificationMessage
from shared.redis import RedisKeys
from tests.conftest import wait_for
from tests.integration.api_gateway.conftest import Running, Tap, send_body
from tests.integration.api_gateway.upstream import Upstream


async def _status_row(gw: Running, notification_id: str) -> dict[str, object]:
    row = await gw.gateway.pool.fetchrow(
        "SELECT * FROM api_gateway.notification_statuses WHERE id = $1", uuid.UUID(notification_id)
    )
    assert row is not None
    return dict(row)


async def test_send_accepts_persists_and_publishes_the_pinned_message(
    gw: Running, upstream: Upstream, tap: Tap
) -> None:
    user_id = upstream.add_user()
    response = await gw.client.post(
        "/v1/notifications/send",
        json=send_body(user_id, request_id="req-1-" + uuid.uuid4().hex, priority="high"),
        headers={**gw.headers, "X-Correlation-ID": "corr-send-1"},
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["success"] is True and body["error"] is None
    data = body["data"]
    assert data["status"] == "queued"
    assert data["notification_type"] == "email"
    assert data["request_id"].startswith("req-1-")
    assert {"notification_id", "created_at"} <= data.keys()
    for header in ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"):
        assert header.lower() in response.headers

    row = await _status_row(gw, data["notification_id"])
    assert row["status"] == "queued" and row["template_version"] == 3 and row["priority"] == 8

    messages = await wait_for(tap.drain)
    assert len(messages) == 1
    incoming = messages[0]
    assert incoming.delivery_mode == 2  # persistent
    message = NotificationMessage.from_bytes(incoming.body)
    assert str(message.notification_id) == data["notification_id"]
    assert message.template.code == "welcome" and message.template.version == 3
    assert message.recipient.email == "ada@example.com" and message.recipient.devices == []
    assert message.correlation_id == "corr-send-1"
    assert message.priority == 8 and message.attempt == 1
    # The confirmed row leaves the outbox (deleted in a batch after the inline publish).
    await wait_for(lambda: _outbox_empty_for(gw, data["notification_id"]), timeout=5)


async def _published(tap: Tap, notification_id: str) -> bool:
    await tap.drain()
    return notification_id in tap.ids()


async def _outbox_empty_for(gw: Running, notification_id: str) -> bool:
    count = await gw.gateway.pool.fetchval(
        "SELECT count(*) FROM api_gateway.outbox WHERE notification_id = $1",
        uuid.UUID(notification_id),
    )
    return bool(count == 0)


async def test_original_aliases_channel_and_template_slug_work(
    gw: Running, upstream: Upstream
) -> None:
    user_id = upstream.add_user(devices=[{"token": "tok-1", "platform": "ios"}])
    body = {
        "channel": "push",
        "user_id": str(user_id),
        "template_slug": "welcome",
        "variables": {"name": "Ada", "link": "https://x.test"},
        "priority": "low",
        "metadata": {"campaign": "spring"},
    }
    response = await gw.client.post("/v1/notifications/send", json=body, headers=gw.headers)
    assert response.status_code == 202, response.text
    row = await _status_row(gw, response.json()["data"]["notification_id"])
    assert row["notification_type"] == "push" and row["priority"] == 2


async def test_invalid_bodies_are_422_with_details(gw: Running, upstream: Upstream) -> None:
    user_id = upstream.add_user()
    cases = [
        send_body(user_id, surprise=1),  # unknown field
        send_body(user_id, channel="push"),  # aliases disagree
        {k: v for k, v in send_body(user_id).items() if k != "template_code"},  # neither
        send_body(user_id, priority=10),
        send_body(user_id, priority=True),
        send_body(user_id, notification_type="sms"),
        {**send_body(user_id), "user_id": "not-a-uuid"},
    ]
    for body in cases:
        response = await gw.client.post("/v1/notifications/send", json=body, headers=gw.headers)
        assert response.status_code == 422, (body, response.text)
        payload = response.json()
        assert payload["error"] == "validation_error" and payload["details"]
        # Validation comes before the rate limit: no bucket was touched.
        assert "ratelimit-limit" not in response.headers


async def test_malformed_json_is_400_and_oversized_body_is_413(gw: Running) -> None:
    response = await gw.client.post(
        "/v1/notifications/send",
        content=b"{not json",
        headers={**gw.headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 400 and response.json()["error"] == "invalid_json"
    big = send_body(uuid.uuid4(), variables={"blob": "x" * (65 * 1024)})
    response = await gw.client.post("/v1/notifications/send", json=big, headers=gw.headers)
    assert response.status_code == 413 and response.json()["error"] == "payload_too_large"


async def test_api_key_is_required_and_either_header_works(gw: Running, upstream: Upstream) -> None:
    body = send_body(upstream.add_user())
    for headers in ({}, {"Authorization": "Bearer nope"}, {"X-API-Key": "nope"}):
        response = await gw.client.post("/v1/notifications/send", json=body, headers=headers)
        assert response.status_code == 401
        assert response.json()["error"] == "invalid_api_key"
    response = await gw.client.post(
        "/v1/notifications/send", json=body, headers={"X-API-Key": gw.api_key}
    )
    assert response.status_code == 202


async def test_unknown_user_and_unknown_template_are_404(gw: Running, upstream: Upstream) -> None:
    response = await gw.client.post(
        "/v1/notifications/send", json=send_body(uuid.uuid4()), headers=gw.headers
    )
    assert response.status_code == 404 and response.json()["error"] == "user_not_found"
    response = await gw.client.post(
        "/v1/notifications/send",
        json=send_body(upstream.add_user(), template_code="nope"),
        headers=gw.headers,
    )
    assert response.status_code == 404 and response.json()["error"] == "template_not_found"


async def test_missing_variables_are_422_naming_them(gw: Running, upstream: Upstream) -> None:
    response = await gw.client.post(
        "/v1/notifications/send",
        json=send_body(upstream.add_user(), variables={"name": "Ada"}),
        headers=gw.headers,
    )
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "missing_variables"
    assert [d["field"] for d in body["details"]] == ["variables.link"]


async def test_legacy_contract_is_served_by_the_same_handler(
    gw: Running, upstream: Upstream, tap: Tap
) -> None:
    user_id = upstream.add_user()
    body = {
        "notification_type": "email",
        "user_id": str(user_id),
        "template_code": "welcome",
        "variables": {"name": "Ada", "link": "https://example.com/x", "meta": {"k": "v"}},
        "request_id": uuid.uuid4().hex,
        "priority": 1,
        "metadata": {"source": "legacy"},
    }
    response = await gw.client.post("/api/v1/notifications/", json=body, headers=gw.headers)
    assert response.status_code == 202, response.text
    assert response.json()["data"]["status"] == "queued"
    message = NotificationMessage.from_bytes((await wait_for(tap.drain))[0].body)
    assert message.priority == 1 and message.variables["link"] == "https://example.com/x"

    bad = {**body, "request_id": uuid.uuid4().hex, "variables": {"name": "Ada", "link": "nope"}}
    response = await gw.client.post("/api/v1/notifications/", json=bad, headers=gw.headers)
    assert response.status_code == 422


async def test_opted_out_channel_and_push_without_device_are_skipped(
    gw: Running, upstream: Upstream, tap: Tap
) -> None:
    cases = [
        (upstream.add_user(email_on=False), "email", "opted_out"),
        (upstream.add_user(), "push", "no_devices"),
        (upstream.add_user(push_on=False, devices=[{"token": "t"}]), "push", "opted_out"),
    ]
    for user_id, channel, reason in cases:
        response = await gw.client.post(
            "/v1/notifications/send",
            json=send_body(user_id, notification_type=channel),
            headers=gw.headers,
        )
        assert response.status_code == 202, response.text
        data = response.json()["data"]
        assert data["status"] == "skipped" and data["status_reason"] == reason
        row = await _status_row(gw, data["notification_id"])
        assert row["status"] == "skipped"
        assert await _outbox_empty_for(gw, data["notification_id"])
    assert await tap.drain() == []


async def test_quiet_hours_schedule_and_the_relay_releases_when_due(
    gw: Running, upstream: Upstream, tap: Tap, redis_client: Redis
) -> None:
    # A window of three hours around now: the send is held until it ends.
    now = datetime.now(UTC)
    start = (now - timedelta(hours=1)).strftime("%H:%M")
    end = (now + timedelta(hours=2)).strftime("%H:%M")
    user_id = upstream.add_user(quiet_hours={"start": start, "end": end})
    response = await gw.client.post(
        "/v1/notifications/send", json=send_body(user_id), headers=gw.headers
    )
    assert response.status_code == 202, response.text
    data = response.json()["data"]
    assert data["status"] == "scheduled" and data["status_reason"] == "quiet_hours"
    scheduled_for = datetime.fromisoformat(data["scheduled_for"])
    assert now + timedelta(hours=1) < scheduled_for <= now + timedelta(hours=2, minutes=1)
    assert await tap.drain() == []
    nid = uuid.UUID(data["notification_id"])

    # Due, but the user is still within quiet hours: the release reads them again and waits.
    await _make_due(gw, nid)
    await wait_for(lambda: _postponed(gw, nid), timeout=10)
    assert (await _status_row(gw, data["notification_id"]))["status"] == "scheduled"
    assert await tap.drain() == []

    # The user drops quiet hours (the user service announces it); due again: released.
    upstream.state.users[str(user_id)]["preferences"]["quiet_hours"] = None
    await _announce_contact_change(gw, redis_client, user_id)
    await _make_due(gw, nid)
    await wait_for(lambda: _published(tap, data["notification_id"]), timeout=10)
    assert tap.ids().count(data["notification_id"]) == 1

    async def queued() -> bool:
        return (await _status_row(gw, data["notification_id"]))["status"] == "queued"

    await wait_for(queued, timeout=5)


async def test_an_opt_out_after_acceptance_skips_a_held_notification_at_release(
    gw: Running, upstream: Upstream, tap: Tap, redis_client: Redis
) -> None:
    now = datetime.now(UTC)
    window = {
        "start": (now - timedelta(hours=1)).strftime("%H:%M"),
        "end": (now + timedelta(hours=2)).strftime("%H:%M"),
    }
    user_id = upstream.add_user(quiet_hours=window)
    response = await gw.client.post(
        "/v1/notifications/send", json=send_body(user_id), headers=gw.headers
    )
    nid = uuid.UUID(response.json()["data"]["notification_id"])
    upstream.state.users[str(user_id)]["preferences"]["email"] = False
    await _announce_contact_change(gw, redis_client, user_id)
    await _make_due(gw, nid)

    async def skipped() -> bool:
        row = await _status_row(gw, str(nid))
        return row["status"] == "skipped" and row["status_reason"] == "opted_out"

    await wait_for(skipped, timeout=10)
    assert await tap.drain() == []


async def test_a_contact_change_announcement_reaches_new_sends_at_once(
    gw: Running, upstream: Upstream, redis_client: Redis
) -> None:
    user_id = upstream.add_user()
    first = await gw.client.post(
        "/v1/notifications/send", json=send_body(user_id), headers=gw.headers
    )
    assert first.json()["data"]["status"] == "queued"
    upstream.state.users[str(user_id)]["preferences"]["email"] = False
    await _announce_contact_change(gw, redis_client, user_id)

    async def skipped() -> bool:
        response = await gw.client.post(
            "/v1/notifications/send", json=send_body(user_id), headers=gw.headers
        )
        return bool(response.json()["data"]["status"] == "skipped")

    # Far below the contact cache's TTL: the announcement, not the expiry, drops the entry.
    await wait_for(skipped, timeout=2)


async def _make_due(gw: Running, notification_id: uuid.UUID) -> None:
    await gw.gateway.pool.execute(
        "UPDATE api_gateway.outbox SET available_at = now() WHERE notification_id = $1",
        notification_id,
    )
    gw.gateway.outbox.wake()


async def _postponed(gw: Running, notification_id: uuid.UUID) -> bool:
    row = await gw.gateway.pool.fetchrow(
        "SELECT available_at > now() + interval '1 minute' AS later, last_error"
        " FROM api_gateway.outbox WHERE notification_id = $1",
        notification_id,
    )
    return bool(row and row["later"])


async def _announce_contact_change(gw: Running, redis: Redis, user_id: uuid.UUID) -> None:
    """What the user service does on every change of a contact."""
    channel = RedisKeys(gw.gateway.settings.redis_key_prefix)(CHANGES_CHANNEL)

    async def heard() -> bool:
        return bool(await redis.publish(channel, str(user_id)))

    await wait_for(heard, timeout=10)  # the gateway's subscription is up


async def test_text_the_database_cannot_store_is_422_never_500(
    gw: Running, upstream: Upstream
) -> None:
    user_id = upstream.add_user()
    bodies = [
        send_body(user_id, request_id="nul\u0000id"),
        send_body(user_id, variables={"name": "A\u0000", "link": "https://x.test"}),
        send_body(user_id, metadata={"k\u0000": 1}),
    ]
    for body in bodies:
        response = await gw.client.post("/v1/notifications/send", json=body, headers=gw.headers)
        assert response.status_code == 422, response.text
        assert response.json()["error"] == "validation_error"
    raw_cases = [
        b'{"notification_type":"email","user_id":"%s","template_code":"welcome",'
        b'"variables":{"name":"\\ud800","link":"https://x.test"}}' % str(user_id).encode(),
        b'{"notification_type":"email","user_id":"%s","template_code":"welcome",'
        b'"variables":{"name":"Ada","link":"https://x.test","n":NaN}}' % str(user_id).encode(),
    ]
    for raw in raw_cases:
        response = await gw.client.post(
            "/v1/notifications/send",
            content=raw,
            headers={**gw.headers, "Content-Type": "application/json"},
        )
        assert response.status_code in (400, 422), response.text
