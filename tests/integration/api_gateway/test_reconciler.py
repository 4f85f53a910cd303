"""The reconciler finds unfinished notifications whose message went missing and enqueues them
again through the outbox; one pass at a time across gateways."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from services.api_gateway.reconciler import LOCK_KEY, Reconciler, queue_depth_of
from services.api_gateway.settings import GatewaySettings
from shared.messaging.message import NotificationMessage
from tests.conftest import wait_for
from tests.integration.api_gateway.conftest import Running, Tap, running_gateway, send_body
from tests.integration.api_gateway.upstream import Upstream


@pytest.fixture
async def gw_now(
    gw_settings: Callable[..., GatewaySettings], upstream: Upstream
) -> AsyncIterator[Running]:
    """A gateway whose reconciler thresholds are zero (its own loop stays idle: the tests
    run passes themselves)."""
    upstream.add_template("welcome", "email")
    settings = gw_settings(
        reconcile_margin_seconds=0.0,
        reconcile_queued_after_seconds=0.0,
        reconcile_interval_seconds=3600.0,
    )
    async with running_gateway(settings) as running:
        # The reconciler looks at every row of the run's database: close what earlier tests
        # left open, so each test here sees only its own notifications.
        await running.gateway.pool.execute(
            "UPDATE api_gateway.notification_statuses SET status = 'failed'"
            " WHERE status IN ('queued', 'scheduled', 'processing', 'retrying')"
        )
        await running.gateway.pool.execute("DELETE FROM api_gateway.outbox")
        yield running


async def _accepted(gw: Running, upstream: Upstream, tap: Tap, *, lose: bool = True) -> uuid.UUID:
    """A notification accepted and published, then (`lose`) its message lost by a purge."""
    response = await gw.client.post(
        "/v1/notifications/send", json=send_body(upstream.add_user()), headers=gw.headers
    )
    assert response.status_code == 202, response.text
    nid = response.json()["data"]["notification_id"]
    await wait_for(lambda: _seen(tap, nid))
    tap.messages.clear()
    await wait_for(lambda: _outbox_empty(gw))
    if lose:
        await _purge(tap, "email.queue")
    return uuid.UUID(nid)


async def _purge(tap: Tap, queue: str) -> None:
    channel = await tap.connection.channel()
    try:
        await (await channel.declare_queue(queue, passive=True)).purge()
    finally:
        await channel.close()


async def _seen(tap: Tap, nid: str) -> bool:
    await tap.drain()
    return nid in tap.ids()


async def _outbox_empty(gw: Running) -> bool:
    return not await gw.gateway.pool.fetchval("SELECT count(*) FROM api_gateway.outbox")


def _reconciler(gw: Running) -> Reconciler:
    return Reconciler(gw.gateway.settings, gw.gateway.pool, queue_depth_of(gw.gateway.publisher))


async def _republished(gw: Running, tap: Tap, nid: uuid.UUID) -> NotificationMessage:
    gw.gateway.outbox.wake()

    async def found() -> Any:
        await tap.drain()
        copies = [m for m in tap.messages if m.message_id == str(nid)]
        return copies[0] if copies else None

    incoming = await wait_for(found)
    return NotificationMessage.from_bytes(incoming.body)


async def test_a_queued_notification_whose_message_vanished_is_enqueued_again(
    gw_now: Running, upstream: Upstream, tap: Tap
) -> None:
    nid = await _accepted(gw_now, upstream, tap)
    assert await _reconciler(gw_now).run_once() == {"queued_idle": 1}
    message = await _republished(gw_now, tap, nid)
    assert message.attempt == 1
    # Enqueued once: the next pass waits for the threshold again (its `updated_at` moved).
    gw_now.gateway.settings.__dict__["reconcile_queued_after_seconds"] = 3600.0
    assert await _reconciler(gw_now).run_once() == {}


async def test_a_backlog_still_in_its_queue_gets_no_copies(
    gw_now: Running, upstream: Upstream, tap: Tap
) -> None:
    """Three idle `queued` rows, two of whose messages still wait in the queue (the workers
    paused through a provider outage, say): only the one that went missing is enqueued."""
    await _purge(tap, "email.queue")
    lost = await _accepted(gw_now, upstream, tap)
    waiting = [await _accepted(gw_now, upstream, tap, lose=False) for _ in range(2)]
    before = await gw_now.gateway.pool.fetchval("SELECT clock_timestamp()")
    assert await _reconciler(gw_now).run_once() == {"queued_idle": 1}
    # What a pass enqueues it touches (`updated_at`): the lost one, and only it.
    touched = await gw_now.gateway.pool.fetch(
        "SELECT id FROM api_gateway.notification_statuses WHERE id = ANY($1::uuid[])"
        " AND updated_at >= $2",
        [lost, *waiting],
        before,
    )
    assert [r["id"] for r in touched] == [lost]


async def test_a_lapsed_claim_is_enqueued_as_the_same_attempt(
    gw_now: Running, upstream: Upstream, tap: Tap
) -> None:
    nid = await _accepted(gw_now, upstream, tap)
    await gw_now.gateway.pool.execute(
        "UPDATE api_gateway.notification_statuses SET status = 'processing', attempts = 2,"
        " claim_token = gen_random_uuid(), lease_until = now() - interval '1 minute',"
        " updated_at = now() - interval '1 minute' WHERE id = $1",
        nid,
    )
    assert await _reconciler(gw_now).run_once() == {"lease_expired": 1}
    assert (await _republished(gw_now, tap, nid)).attempt == 2


async def test_an_overdue_retry_is_enqueued_as_the_next_attempt(
    gw_now: Running, upstream: Upstream, tap: Tap
) -> None:
    nid = await _accepted(gw_now, upstream, tap)
    await gw_now.gateway.pool.execute(
        "UPDATE api_gateway.notification_statuses SET status = 'retrying', attempts = 3,"
        " next_attempt_at = now() - interval '1 minute', updated_at = now() - interval '1 minute'"
        " WHERE id = $1",
        nid,
    )
    assert await _reconciler(gw_now).run_once() == {"retry_overdue": 1}
    assert (await _republished(gw_now, tap, nid)).attempt == 4


async def test_a_held_claim_and_a_finished_notification_are_left_alone(
    gw_now: Running, upstream: Upstream, tap: Tap
) -> None:
    held = await _accepted(gw_now, upstream, tap)
    done = await _accepted(gw_now, upstream, tap)
    await gw_now.gateway.pool.execute(
        "UPDATE api_gateway.notification_statuses SET status = 'processing', attempts = 1,"
        " claim_token = gen_random_uuid(), lease_until = now() + interval '1 minute' WHERE id = $1",
        held,
    )
    await gw_now.gateway.pool.execute(
        "UPDATE api_gateway.notification_statuses SET status = 'delivered' WHERE id = $1", done
    )
    assert await _reconciler(gw_now).run_once() == {}


async def test_a_notification_past_its_expiry_is_expired_not_sent(
    gw_now: Running, upstream: Upstream, tap: Tap
) -> None:
    nid = await _accepted(gw_now, upstream, tap)
    await gw_now.gateway.pool.execute(
        "UPDATE api_gateway.notification_statuses SET expires_at = now() - interval '1 second'"
        " WHERE id = $1",
        nid,
    )
    assert await _reconciler(gw_now).run_once() == {"expired": 1}
    row = await gw_now.gateway.pool.fetchrow(
        "SELECT status, status_reason FROM api_gateway.notification_statuses WHERE id = $1", nid
    )
    assert (row["status"], row["status_reason"]) == ("expired", "expired")


async def test_only_one_reconciler_runs_at_a_time(
    gw_now: Running, upstream: Upstream, tap: Tap
) -> None:
    await _accepted(gw_now, upstream, tap)
    async with gw_now.gateway.pool.acquire() as other, other.transaction():
        # Another gateway's pass holds the lock: this one does nothing.
        assert await other.fetchval("SELECT pg_try_advisory_xact_lock($1)", LOCK_KEY)
        assert await _reconciler(gw_now).run_once() == {}
    assert await _reconciler(gw_now).run_once() == {"queued_idle": 1}
