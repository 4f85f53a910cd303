"""`send_at` and cancellation: a notification held until its time by the relay that releases
quiet-hours holds, and `DELETE /v1/notifications/{ref}` racing that release and the claim."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from redis.asyncio import Redis

from shared.contacts import CHANGES_CHANNEL
from shared.notification_status import ClaimOutcome, StatusStore
from shared.redis import RedisKeys
from tests.conftest import wait_for
from tests.integration.api_gateway.conftest import Running, Tap, send_body
from tests.integration.api_gateway.upstream import Upstream


def _at(delta: timedelta) -> str:
    return (datetime.now(UTC) + delta).isoformat()


async def _send(gw: Running, body: dict[str, Any], path: str = "/v1/notifications/send") -> Any:
    response = await gw.client.post(path, json=body, headers=gw.headers)
    assert response.status_code == 202, response.text
    return response.json()["data"]


async def _row(gw: Running, notification_id: str) -> dict[str, Any]:
    row = await gw.gateway.pool.fetchrow(
        "SELECT * FROM api_gateway.notification_statuses WHERE id = $1", uuid.UUID(notification_id)
    )
    assert row is not None
    return dict(row)


async def _outbox(gw: Running, notification_id: str) -> list[dict[str, Any]]:
    rows = await gw.gateway.pool.fetch(
        "SELECT kind, available_at FROM api_gateway.outbox WHERE notification_id = $1",
        uuid.UUID(notification_id),
    )
    return [dict(r) for r in rows]


async def _make_due(gw: Running, notification_id: str) -> None:
    await gw.gateway.pool.execute(
        "UPDATE api_gateway.outbox SET available_at = now() WHERE notification_id = $1",
        uuid.UUID(notification_id),
    )


async def _announce(gw: Running, redis: Redis, user_id: uuid.UUID) -> None:
    """What the user service does on every change of a contact: the gateway drops its copy."""
    channel = RedisKeys(gw.gateway.settings.redis_key_prefix)(CHANGES_CHANNEL)

    async def heard() -> bool:
        return bool(await redis.publish(channel, str(user_id)))

    await wait_for(heard, timeout=10)


async def _claim(gw: Running, notification_id: str) -> ClaimOutcome:
    """A worker's claim of attempt 1, through the real claim statement."""
    claims = await StatusStore(gw.gateway.pool).claim(
        [(uuid.UUID(notification_id), 1)], lease_seconds=30, max_claims=5
    )
    return claims[uuid.UUID(notification_id)].outcome


async def _published(tap: Tap, notification_id: str) -> bool:
    await tap.drain()
    return notification_id in tap.ids()


# --- send_at ---------------------------------------------------------------------------


async def test_a_send_at_is_scheduled_and_released_once_at_its_time(
    gw: Running, upstream: Upstream, tap: Tap
) -> None:
    user_id = upstream.add_user()
    send_at = datetime.now(UTC) + timedelta(hours=2)
    data = await _send(gw, send_body(user_id, send_at=send_at.isoformat()))

    assert (data["status"], data["status_reason"]) == ("scheduled", "send_at")
    assert datetime.fromisoformat(data["scheduled_for"]) == send_at
    nid = data["notification_id"]
    status = (await gw.client.get(f"/v1/notifications/{nid}/status", headers=gw.headers)).json()
    assert datetime.fromisoformat(status["data"]["scheduled_for"]) == send_at
    assert status["data"]["status"] == "scheduled"
    [held] = await _outbox(gw, nid)
    assert held["kind"] == "release" and held["available_at"] == send_at
    assert await tap.drain() == []

    # The release fires twice at once (two relays): one publish, one claim.
    await _make_due(gw, nid)
    await asyncio.gather(gw.gateway.outbox.relay_once(), gw.gateway.outbox.relay_once())
    await wait_for(lambda: _published(tap, nid), timeout=10)
    assert tap.ids().count(nid) == 1
    assert (await _row(gw, nid))["status"] == "queued"
    assert await _outbox(gw, nid) == []
    assert [await _claim(gw, nid), await _claim(gw, nid)] == [
        ClaimOutcome.CLAIMED,
        ClaimOutcome.LOST,
    ]


async def test_the_legacy_body_takes_send_at_too(gw: Running, upstream: Upstream) -> None:
    user_id = upstream.add_user()
    body = send_body(user_id, send_at=_at(timedelta(minutes=30)), priority=5)
    data = await _send(gw, body, path="/api/v1/notifications/")
    assert (data["status"], data["status_reason"]) == ("scheduled", "send_at")


async def test_a_send_at_in_the_past_too_far_or_after_expiry_is_422(
    gw: Running, upstream: Upstream, tap: Tap
) -> None:
    user_id = upstream.add_user()
    cases = [
        ({"send_at": _at(-timedelta(seconds=1))}, "send_at_in_past"),
        ({"send_at": _at(timedelta(days=366))}, "send_at_too_far"),
        (
            {"send_at": _at(timedelta(hours=2)), "expires_at": _at(timedelta(hours=1))},
            "send_at_after_expiry",
        ),
        ({"send_at": _at(timedelta(hours=2)), "ttl_seconds": 60}, "send_at_after_expiry"),
        ({"send_at": "2030-01-01T09:00:00"}, "validation_error"),  # no offset
    ]
    for fields, code in cases:
        response = await gw.client.post(
            "/v1/notifications/send", json=send_body(user_id, **fields), headers=gw.headers
        )
        assert response.status_code == 422, (fields, response.text)
        assert response.json()["error"] == code, fields
    count = await gw.gateway.pool.fetchval(
        "SELECT count(*) FROM api_gateway.notification_statuses WHERE user_id = $1", user_id
    )
    assert count == 0
    assert await tap.drain() == []


async def test_preferences_are_read_at_release_not_at_acceptance(
    gw: Running, upstream: Upstream, tap: Tap, redis_client: Redis
) -> None:
    # Opted out when sent, back in by the time it is due: it goes.
    user_id = upstream.add_user()
    upstream.state.users[str(user_id)]["preferences"]["email"] = False
    data = await _send(gw, send_body(user_id, send_at=_at(timedelta(hours=1))))
    assert data["status"] == "scheduled"
    upstream.state.users[str(user_id)]["preferences"]["email"] = True
    await _announce(gw, redis_client, user_id)
    await _make_due(gw, data["notification_id"])
    gw.gateway.outbox.wake()
    await wait_for(lambda: _published(tap, data["notification_id"]), timeout=10)

    # Opted out by the time it is due: skipped, never published.
    upstream.state.users[str(user_id)]["preferences"]["email"] = False
    await _announce(gw, redis_client, user_id)
    later = await _send(gw, send_body(user_id, send_at=_at(timedelta(hours=1))))
    await _make_due(gw, later["notification_id"])
    gw.gateway.outbox.wake()

    async def skipped() -> bool:
        row = await _row(gw, later["notification_id"])
        return bool(row["status"] == "skipped" and row["status_reason"] == "opted_out")

    await wait_for(skipped, timeout=10)
    assert later["notification_id"] not in tap.ids()


async def test_a_send_at_falling_in_quiet_hours_waits_for_them_to_end(
    gw: Running, upstream: Upstream, tap: Tap
) -> None:
    now = datetime.now(UTC)
    window = {
        "start": (now - timedelta(hours=1)).strftime("%H:%M"),
        "end": (now + timedelta(hours=2)).strftime("%H:%M"),
    }
    user_id = upstream.add_user(quiet_hours=window)
    data = await _send(gw, send_body(user_id, send_at=_at(timedelta(minutes=5))))
    assert (data["status"], data["status_reason"]) == ("scheduled", "send_at")
    await _make_due(gw, data["notification_id"])
    gw.gateway.outbox.wake()

    async def postponed() -> bool:
        rows = await _outbox(gw, data["notification_id"])
        return bool(rows) and rows[0]["available_at"] > datetime.now(UTC) + timedelta(minutes=30)

    await wait_for(postponed, timeout=10)
    assert (await _row(gw, data["notification_id"]))["status"] == "scheduled"
    assert await tap.drain() == []


# --- cancel ----------------------------------------------------------------------------


async def _cancel(gw: Running, ref: str, headers: dict[str, str] | None = None) -> Any:
    return await gw.client.delete(f"/v1/notifications/{ref}", headers=headers or gw.headers)


async def test_a_scheduled_notification_is_cancelled_and_never_sent(
    gw: Running, upstream: Upstream, tap: Tap
) -> None:
    user_id = upstream.add_user()
    request_id = "later-" + uuid.uuid4().hex
    data = await _send(
        gw, send_body(user_id, send_at=_at(timedelta(hours=1)), request_id=request_id)
    )
    nid = data["notification_id"]

    response = await _cancel(gw, request_id)  # by request id, like the status route

    assert response.status_code == 200, response.text
    detail = response.json()["data"]
    assert detail["notification_id"] == nid
    assert (detail["status"], detail["status_reason"]) == ("cancelled", "cancelled")
    assert [h["status"] for h in detail["history"]] == ["scheduled", "cancelled"]
    # Again: the same answer, nothing moves.
    again = await _cancel(gw, nid)
    assert again.status_code == 200 and again.json()["data"]["history"] == detail["history"]

    # Its release comes due: the relay drops it, nothing is published, no claim takes it.
    await _make_due(gw, nid)
    gw.gateway.outbox.wake()
    await wait_for(lambda: _outbox_gone(gw, nid), timeout=10)
    assert await tap.drain() == []
    assert await _claim(gw, nid) is ClaimOutcome.LOST
    assert (await _row(gw, nid))["status"] == "cancelled"


async def _outbox_gone(gw: Running, nid: str) -> bool:
    return await _outbox(gw, nid) == []


async def test_a_queued_notification_is_cancelled_and_its_message_is_dropped(
    gw: Running, upstream: Upstream, tap: Tap
) -> None:
    user_id = upstream.add_user()
    data = await _send(gw, send_body(user_id))
    nid = data["notification_id"]
    await wait_for(lambda: _published(tap, nid), timeout=10)

    assert (await _cancel(gw, nid)).json()["data"]["status"] == "cancelled"
    # The message already in the queue reaches a worker: its claim loses.
    assert await _claim(gw, nid) is ClaimOutcome.LOST


async def test_cancel_is_409_once_claimed_or_ended_and_404_for_another_key(
    gw: Running, upstream: Upstream
) -> None:
    user_id = upstream.add_user()
    claimed = (await _send(gw, send_body(user_id)))["notification_id"]
    assert await _claim(gw, claimed) is ClaimOutcome.CLAIMED
    skipped_user = upstream.add_user(email_on=False)
    skipped = (await _send(gw, send_body(skipped_user)))["notification_id"]

    for nid, status in ((claimed, "processing"), (skipped, "skipped")):
        response = await _cancel(gw, nid)
        assert response.status_code == 409, response.text
        error = response.json()
        assert error["error"] == "not_cancellable" and status in error["message"]
        assert (await _row(gw, nid))["status"] == status

    other = await gw.new_key()
    scheduled = (await _send(gw, send_body(user_id, send_at=_at(timedelta(hours=1)))))[
        "notification_id"
    ]
    for ref in (scheduled, str(uuid.uuid4()), "no-such-request"):
        response = await _cancel(gw, ref, headers=other)
        assert response.status_code == 404, response.text
        assert response.json()["error"] == "notification_not_found"
    assert (await _row(gw, scheduled))["status"] == "scheduled"
    assert (await gw.client.delete(f"/v1/notifications/{scheduled}")).status_code == 401


async def test_cancel_racing_the_claim_ends_in_exactly_one_of_them(
    gw: Running, upstream: Upstream
) -> None:
    user_id = upstream.add_user()
    ids = [(await _send(gw, send_body(user_id)))["notification_id"] for _ in range(20)]

    async def race(nid: str) -> tuple[int, ClaimOutcome]:
        response, outcome = await asyncio.gather(_cancel(gw, nid), _claim(gw, nid))
        return response.status_code, outcome

    results = await asyncio.gather(*(race(nid) for nid in ids))

    for nid, (code, outcome) in zip(ids, results, strict=True):
        status = (await _row(gw, nid))["status"]
        assert (code, outcome, status) in {
            (200, ClaimOutcome.LOST, "cancelled"),
            (409, ClaimOutcome.CLAIMED, "processing"),
        }, nid


async def test_cancel_racing_the_release_is_never_sent(
    gw: Running, upstream: Upstream, tap: Tap
) -> None:
    user_id = upstream.add_user()
    ids = [
        (await _send(gw, send_body(user_id, send_at=_at(timedelta(hours=1)))))["notification_id"]
        for _ in range(10)
    ]
    for nid in ids:
        await _make_due(gw, nid)

    results = await asyncio.gather(
        gw.gateway.outbox.relay_once(), *(_cancel(gw, nid) for nid in ids)
    )

    assert all(r.status_code == 200 for r in results[1:])
    await tap.drain()
    for nid in ids:
        assert (await _row(gw, nid))["status"] == "cancelled"
        # A copy the release published before the cancel is dropped by the claim.
        assert await _claim(gw, nid) is ClaimOutcome.LOST
