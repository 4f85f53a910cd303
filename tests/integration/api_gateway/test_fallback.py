"""`fallback`: a push that cannot be delivered (no device, a permanent failure, not delivered
by the deadline) is sent as an email instead, once; a push delivered in time sends no email."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from services.api_gateway.reconciler import Reconciler, queue_depth_of
from shared.notification_status import ClaimOutcome, Finish, NotificationStatus, StatusStore
from tests.conftest import wait_for
from tests.integration.api_gateway.conftest import Running, Tap, send_body
from tests.integration.api_gateway.upstream import Upstream

DEVICE = [{"token": "tok-fallback", "platform": "android"}]


def push_with_fallback(user_id: uuid.UUID, after: int = 300, **overrides: Any) -> dict[str, Any]:
    return send_body(
        user_id,
        **{
            "notification_type": "push",
            "fallback": {"channel": "email", "after_seconds": after},
            **overrides,
        },
    )


async def _send(gw: Running, body: dict[str, Any]) -> Any:
    response = await gw.client.post("/v1/notifications/send", json=body, headers=gw.headers)
    assert response.status_code == 202, response.text
    return response.json()["data"]


async def _status(gw: Running, notification_id: str) -> dict[str, Any]:
    response = await gw.client.get(
        f"/v1/notifications/{notification_id}/status", headers=gw.headers
    )
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


async def _make_due(gw: Running, notification_id: str) -> None:
    await gw.gateway.pool.execute(
        "UPDATE api_gateway.outbox SET available_at = now() WHERE notification_id = $1",
        uuid.UUID(notification_id),
    )
    gw.gateway.outbox.wake()


async def _finish(gw: Running, notification_id: str, status: NotificationStatus) -> None:
    """What the push worker does: claim the attempt, then record how it ended."""
    store = StatusStore(gw.gateway.pool)
    nid = uuid.UUID(notification_id)
    claim = (await store.claim([(nid, 1)], lease_seconds=30, max_claims=5))[nid]
    assert claim.outcome is ClaimOutcome.CLAIMED and claim.token is not None
    reason = "permanent_failure" if status is NotificationStatus.FAILED else None
    assert await store.finish([Finish(nid, claim.token, status, reason=reason)]) == {nid}


async def _is(gw: Running, notification_id: str, status: str, reason: str | None = None) -> bool:
    data = await _status(gw, notification_id)
    return data["status"] == status and (reason is None or data["status_reason"] == reason)


async def _published(tap: Tap, notification_id: str) -> bool:
    await tap.drain()
    return notification_id in tap.ids()


async def test_the_fallback_waits_scheduled_and_both_show_the_chain(
    gw: Running, upstream: Upstream, tap: Tap
) -> None:
    user_id = upstream.add_user(devices=DEVICE)
    before = datetime.now(UTC)
    data = await _send(gw, push_with_fallback(user_id, request_id="fb-" + uuid.uuid4().hex))

    fallback = data["fallback"]
    assert (data["status"], data["notification_type"]) == ("queued", "push")
    assert (fallback["status"], fallback["status_reason"]) == ("scheduled", "fallback")
    assert fallback["notification_type"] == "email" and fallback["created_at"] == data["created_at"]
    deadline = datetime.fromisoformat(fallback["scheduled_for"])
    assert before + timedelta(seconds=300) <= deadline <= datetime.now(UTC) + timedelta(seconds=300)
    push, email = (
        await _status(gw, data["notification_id"]),
        await _status(gw, fallback["notification_id"]),
    )
    assert push["fell_back_to"] == fallback["notification_id"] and push["fallback_of"] is None
    assert email["fallback_of"] == data["notification_id"] and email["fell_back_to"] is None
    # The send's request id names the push, not its fallback.
    assert (await _status(gw, data["request_id"]))["notification_id"] == data["notification_id"]
    await wait_for(lambda: _published(tap, data["notification_id"]), timeout=10)
    assert fallback["notification_id"] not in tap.ids()


async def test_a_push_delivered_just_before_the_deadline_sends_no_email(
    gw: Running, upstream: Upstream, tap: Tap
) -> None:
    user_id = upstream.add_user(devices=DEVICE)
    data = await _send(gw, push_with_fallback(user_id))
    fallback_id = data["fallback"]["notification_id"]

    await _finish(gw, data["notification_id"], NotificationStatus.DELIVERED)
    await _make_due(gw, fallback_id)  # the deadline comes right after

    await wait_for(lambda: _is(gw, fallback_id, "skipped", "primary_delivered"), timeout=10)
    assert not await _published(tap, fallback_id)
    assert (
        await gw.gateway.pool.fetchval(
            "SELECT count(*) FROM api_gateway.outbox WHERE notification_id = $1",
            uuid.UUID(fallback_id),
        )
        == 0
    )


async def test_a_push_not_delivered_by_the_deadline_sends_the_email_once(
    gw: Running, upstream: Upstream, tap: Tap
) -> None:
    user_id = upstream.add_user(devices=DEVICE)
    data = await _send(gw, push_with_fallback(user_id))
    fallback_id = data["fallback"]["notification_id"]

    await _make_due(gw, fallback_id)  # the push is still queued at the deadline

    await wait_for(lambda: _published(tap, fallback_id), timeout=10)
    assert tap.ids().count(fallback_id) == 1
    assert [m.routing_key for m in tap.messages if m.message_id == fallback_id] == ["email"]
    assert await _is(gw, fallback_id, "queued")


async def test_a_push_that_fails_permanently_releases_the_email_early(
    gw: Running, upstream: Upstream, tap: Tap
) -> None:
    user_id = upstream.add_user(devices=DEVICE)
    data = await _send(gw, push_with_fallback(user_id, after=3600))
    fallback_id = data["fallback"]["notification_id"]

    await _finish(gw, data["notification_id"], NotificationStatus.FAILED)
    counts = await Reconciler(
        gw.gateway.settings, gw.gateway.pool, queue_depth_of(gw.gateway.publisher)
    ).run_once()
    gw.gateway.outbox.wake()

    assert counts.get("fallback_early") == 1
    await wait_for(lambda: _published(tap, fallback_id), timeout=10)
    assert await _is(gw, fallback_id, "queued")


async def test_a_user_without_a_device_gets_the_email_at_once(
    gw: Running, upstream: Upstream, tap: Tap
) -> None:
    user_id = upstream.add_user()
    data = await _send(gw, push_with_fallback(user_id))
    assert (data["status"], data["status_reason"]) == ("skipped", "no_devices")
    assert data["fallback"]["status"] == "queued"
    await wait_for(lambda: _published(tap, data["fallback"]["notification_id"]), timeout=10)


async def test_a_user_opted_out_of_email_gets_no_fallback_email(
    gw: Running, upstream: Upstream, tap: Tap
) -> None:
    # No device and email off: both skipped at once.
    nothing = await _send(gw, push_with_fallback(upstream.add_user(email_on=False)))
    assert nothing["fallback"]["status"] == "skipped"
    assert nothing["fallback"]["status_reason"] == "opted_out"

    # A device, email off: the fallback is checked again at the deadline and skipped.
    user_id = upstream.add_user(devices=DEVICE, email_on=False)
    data = await _send(gw, push_with_fallback(user_id))
    fallback_id = data["fallback"]["notification_id"]
    await _make_due(gw, fallback_id)
    await wait_for(lambda: _is(gw, fallback_id, "skipped", "opted_out"), timeout=10)
    assert not await _published(tap, fallback_id)


async def test_cancelling_the_push_cancels_its_fallback(
    gw: Running, upstream: Upstream, tap: Tap
) -> None:
    user_id = upstream.add_user(devices=DEVICE)
    data = await _send(gw, push_with_fallback(user_id))
    fallback_id = data["fallback"]["notification_id"]
    cancelled = await gw.client.delete(
        f"/v1/notifications/{data['notification_id']}", headers=gw.headers
    )
    assert cancelled.status_code == 200, cancelled.text

    await _make_due(gw, fallback_id)

    await wait_for(lambda: _is(gw, fallback_id, "cancelled"), timeout=10)
    assert not await _published(tap, fallback_id)


async def test_a_replay_answers_the_same_send_and_fallback(gw: Running, upstream: Upstream) -> None:
    user_id = upstream.add_user(devices=DEVICE)
    body = push_with_fallback(user_id, request_id="again-" + uuid.uuid4().hex)
    first = await gw.client.post("/v1/notifications/send", json=body, headers=gw.headers)
    again = await gw.client.post("/v1/notifications/send", json=body, headers=gw.headers)
    assert again.headers["Idempotency-Replayed"] == "true"
    assert again.json() == first.json()
    assert first.json()["data"]["fallback"]["created_at"] is not None
    count = await gw.gateway.pool.fetchval(
        "SELECT count(*) FROM api_gateway.notification_statuses WHERE user_id = $1", user_id
    )
    assert count == 2


async def test_bad_fallbacks_are_422(gw: Running, upstream: Upstream) -> None:
    user_id = upstream.add_user(devices=DEVICE)
    group = push_with_fallback(user_id, channels=["push", "email"])
    del group["notification_type"]
    for body in (
        push_with_fallback(user_id, fallback={"channel": "push", "after_seconds": 60}),
        push_with_fallback(user_id, fallback={"channel": "email", "after_seconds": 0}),
        push_with_fallback(user_id, fallback={"channel": "email"}),
        push_with_fallback(user_id, collapse_key="k", collapse_window_seconds=60),
        group,
    ):
        response = await gw.client.post("/v1/notifications/send", json=body, headers=gw.headers)
        assert response.status_code == 422, (body, response.text)
