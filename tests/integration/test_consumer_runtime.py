"""The shared worker runtime against real RabbitMQ and PostgreSQL, with a scripted sender.

The sender is the only stand-in: it plays the provider (deliver, fail for a while, fail for
good), so these tests pin the runtime's own contract: claim, send, mark, ack last; retries
through delay queues; the DLQ with its headers; replay; shutdown.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db import create_asyncpg_pool
from shared.messaging.consumer import ConsumerRuntime
from shared.messaging.delivery import (
    Attempt,
    DeliveryResult,
    PermanentFailure,
    TransientFailure,
    UncertainDelivery,
    parse_retry_after,
)
from shared.messaging.message import Channel, NotificationMessage, Recipient, TemplateRef
from shared.messaging.publisher import Publisher
from shared.messaging.topology import FAILED_QUEUE, declare_topology
from shared.messaging.worker import create_worker_app
from shared.notification_status import (
    StatusStore,
    notification_status_history,
    notification_statuses,
)
from shared.settings import Settings
from tests.conftest import wait_for

KEY = {"X-Internal-API-Key": "test-internal-key"}

Behaviour = Callable[[NotificationMessage], Any]


@dataclass
class ScriptedSender:
    """Plays the provider: `plan[notification_id]` is a list of outcomes, one per attempt;
    `up` is what a probe answers."""

    plan: dict[uuid.UUID, list[Any]] = field(default_factory=dict)
    sent: list[NotificationMessage] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)
    gate: asyncio.Event | None = None
    closed: bool = False
    up: bool = True
    probes: int = 0

    async def deliver(self, message: NotificationMessage, attempt: Attempt) -> DeliveryResult:
        self.attempts.append(attempt)
        if self.gate is not None:
            await self.gate.wait()
        outcomes = self.plan.get(message.notification_id, [])
        outcome = outcomes.pop(0) if outcomes else None
        if isinstance(outcome, Exception):
            raise outcome
        self.sent.append(message)
        return DeliveryResult(provider_message_id=f"prov-{message.notification_id}")

    async def probe(self) -> bool:
        self.probes += 1
        return self.up

    async def aclose(self) -> None:
        self.closed = True


@pytest.fixture(scope="module")
def base_settings(base_settings: Settings, make_vhost: Callable[[str], str]) -> Settings:
    """The run's settings on a RabbitMQ vhost of this module's own (see tests/conftest.py).
    These workers run without a user service: the delivery-time contact check is off (it is
    tested with the whole stack)."""
    return base_settings.model_copy(
        update={"rabbitmq_url": make_vhost("runtime"), "delivery_policy_check": False}
    )


@pytest.fixture
async def clean_queues(base_settings: Settings) -> None:
    """Start every test with empty email and failed queues (other tests share the vhost)."""
    connection = await aio_pika.connect(base_settings.rabbitmq_url)
    try:
        channel = await connection.channel()
        topology = await declare_topology(channel, base_settings.retry_delay_levels_ms)
        await topology.work_queues[Channel.EMAIL].purge()
        await topology.failed_queue.purge()
    finally:
        await connection.close()


@asynccontextmanager
async def running_worker(
    settings: Settings, sender: ScriptedSender
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_worker_app(
        service="test_worker",
        channel=Channel.EMAIL,
        settings=settings,
        sender_factory=lambda _settings, _app: sender,
        title="test worker",
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield app, client


async def new_notification(
    engine: AsyncEngine,
    *,
    expires_in_seconds: float | None = None,
    held_for: timedelta | None = None,
) -> NotificationMessage:
    """A `queued` row and its message; `held_for`: accepted that long ago and released from a
    hold (`send_at`, quiet hours) just now."""
    message = NotificationMessage(
        notification_id=uuid.uuid4(),
        notification_type=Channel.EMAIL,
        user_id=uuid.uuid4(),
        recipient=Recipient(name="Ada", email="ada@example.com"),
        template=TemplateRef(code="welcome", version=1, locale="en"),
        variables={"name": "Ada"},
        correlation_id=uuid.uuid4().hex,
        created_at=datetime.now(UTC),
    )
    async with engine.begin() as conn:
        await conn.execute(
            insert(notification_statuses).values(
                id=message.notification_id,
                notification_type="email",
                user_id=message.user_id,
                template_code="welcome",
                template_version=1,
                status="queued",
                payload=message.to_bytes(),
                expires_at=(
                    func.now() + timedelta(seconds=expires_in_seconds)
                    if expires_in_seconds is not None
                    else None
                ),
                **(
                    {"created_at": func.now() - held_for, "scheduled_for": func.now()}
                    if held_for is not None
                    else {}
                ),
            )
        )
    return message


async def status_row(engine: AsyncEngine, notification_id: uuid.UUID) -> Any:
    async with engine.connect() as conn:
        return (
            await conn.execute(
                select(notification_statuses).where(notification_statuses.c.id == notification_id)
            )
        ).one()


def status_is(engine: AsyncEngine, notification_id: uuid.UUID, status: str) -> Callable[[], Any]:
    async def check() -> Any:
        row = await status_row(engine, notification_id)
        return row if row.status == status else None

    return check


async def test_a_message_is_delivered_and_marked(
    base_settings: Settings, engine: AsyncEngine, publisher: Publisher, clean_queues: None
) -> None:
    sender = ScriptedSender()
    async with running_worker(base_settings, sender) as (_, client):
        message = await new_notification(engine)
        await publisher.publish_notification(message)
        row = await wait_for(status_is(engine, message.notification_id, "delivered"))
        assert row.provider_message_id == f"prov-{message.notification_id}"
        assert row.attempts == 1
        health = await client.get("/health")
        assert health.status_code == 200
        assert health.json()["data"]["checks"] == {"db": "up", "broker": "up", "consumer": "up"}
    assert [m.notification_id for m in sender.sent] == [message.notification_id]
    assert sender.closed


def consumed(outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "notifications_messages_consumed_total", {"queue": "email.queue", "outcome": outcome}
    )
    return value or 0.0


async def history(engine: AsyncEngine, notification_id: uuid.UUID) -> list[tuple[str, int, int]]:
    table = notification_status_history
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(table.c.status, table.c.attempt, table.c.generation)
            .where(table.c.notification_id == notification_id)
            .order_by(table.c.id)
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]


async def dead_letters(settings: Settings) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """Everything in failed.queue, read and handed back (requeued) on a private connection."""
    connection = await aio_pika.connect(settings.rabbitmq_url)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(FAILED_QUEUE, passive=True)
        held = []
        while (incoming := await queue.get(fail=False)) is not None:
            held.append(incoming)
        for incoming in held:
            await incoming.nack(requeue=True)
        return held
    finally:
        await connection.close()


def dead_letter_of(settings: Settings, message_id: str) -> Callable[[], Any]:
    async def check() -> Any:
        found = [m for m in await dead_letters(settings) if m.message_id == message_id]
        return found[0] if found else None

    return check


async def test_transient_failures_retry_with_backoff_visible_in_the_status(
    base_settings: Settings, engine: AsyncEngine, publisher: Publisher, clean_queues: None
) -> None:
    sender = ScriptedSender()
    async with running_worker(base_settings, sender):
        message = await new_notification(engine)
        sender.plan[message.notification_id] = [
            TransientFailure("421 try later", retry_after_seconds=1.5),
            TransientFailure("connection refused"),
        ]
        await publisher.publish_notification(message)
        # Retry-After 1.5 s is a floor: the retry waits in the 1600 ms delay queue, long
        # enough to see the status between attempts.
        retrying = await wait_for(status_is(engine, message.notification_id, "retrying"))
        assert retrying.attempts == 1 and retrying.last_error == "421 try later"
        row = await wait_for(status_is(engine, message.notification_id, "delivered"))
    assert row.attempts == 3 and row.last_error == "connection refused"
    assert await history(engine, message.notification_id) == [
        ("processing", 1, 0),
        ("retrying", 1, 0),
        ("processing", 2, 0),
        ("retrying", 2, 0),
        ("processing", 3, 0),
        ("delivered", 3, 0),
    ]
    assert [m.attempt for m in sender.sent] == [3]


async def test_a_spent_retry_budget_ends_failed_in_the_dlq(
    base_settings: Settings, engine: AsyncEngine, publisher: Publisher, clean_queues: None
) -> None:
    # Retries stop by time, not by count: with a 1 s budget the second backoff (200 ms steps,
    # doubling) still fits, a later one does not.
    settings = base_settings.model_copy(update={"retry_budget_seconds": 1.0})
    sender = ScriptedSender()
    async with running_worker(settings, sender):
        message = await new_notification(engine)
        sender.plan[message.notification_id] = [TransientFailure("timeout")] * 20
        await publisher.publish_notification(message)
        row = await wait_for(status_is(engine, message.notification_id, "failed"))
    assert row.attempts >= 2 and "retry budget" in row.last_error
    assert row.status_reason == "retry_budget_exhausted"
    dead = await wait_for(dead_letter_of(base_settings, str(message.notification_id)))
    assert dead.headers["x-failure-reason"] == "retry_budget_exhausted"
    assert sender.sent == []


async def test_a_notification_held_for_days_gets_its_whole_budget_from_its_release(
    base_settings: Settings, engine: AsyncEngine, publisher: Publisher, clean_queues: None
) -> None:
    settings = base_settings.model_copy(update={"retry_budget_seconds": 3600.0})
    sender = ScriptedSender()
    async with running_worker(settings, sender):
        message = await new_notification(engine, held_for=timedelta(days=2))
        sender.plan[message.notification_id] = [TransientFailure("timeout")]
        await publisher.publish_notification(message)
        row = await wait_for(status_is(engine, message.notification_id, "delivered"))
    assert row.attempts == 2  # retried, not failed for a budget spent while it was held


async def test_a_budget_spent_with_a_partial_delivery_counts_as_delivered(
    base_settings: Settings, engine: AsyncEngine, publisher: Publisher, clean_queues: None
) -> None:
    settings = base_settings.model_copy(update={"retry_budget_seconds": 0.0})
    sender = ScriptedSender()
    async with running_worker(settings, sender):
        message = await new_notification(engine)
        partial = DeliveryResult(provider_message_id="p-1", detail="accepted by 1 of 2 devices")
        sender.plan[message.notification_id] = [TransientFailure("UNAVAILABLE", partial=partial)]
        await publisher.publish_notification(message)
        row = await wait_for(status_is(engine, message.notification_id, "delivered"))
    assert row.provider_message_id == "p-1"


async def test_a_permanent_failure_goes_to_the_dlq_with_headers_saying_why(
    base_settings: Settings, engine: AsyncEngine, publisher: Publisher, clean_queues: None
) -> None:
    sender = ScriptedSender()
    async with running_worker(base_settings, sender):
        message = await new_notification(engine)
        sender.plan[message.notification_id] = [PermanentFailure("550 no such user")]
        await publisher.publish_notification(message)
        row = await wait_for(status_is(engine, message.notification_id, "failed"))
    assert row.attempts == 1 and row.last_error == "550 no such user"
    dead = await wait_for(dead_letter_of(base_settings, str(message.notification_id)))
    assert dead.headers["x-failure-reason"] == "permanent_failure"
    assert dead.headers["x-failure-error"] == "550 no such user"
    assert dead.headers["x-original-queue"] == "email.queue"
    assert dead.headers["x-failed-by"] == "test_worker"
    assert dead.headers["x-correlation-id"] == message.correlation_id


@pytest.mark.parametrize("body", [b"not json at all", b'{"notification_type": "email"}'])
async def test_a_poison_message_goes_to_the_dlq_at_once(
    base_settings: Settings, publisher: Publisher, clean_queues: None, body: bytes
) -> None:
    marker = uuid.uuid4().hex
    async with running_worker(base_settings, ScriptedSender()):
        assert publisher.topology is not None
        await publisher.publish(
            publisher.topology.work_exchange, routing_key="email", body=body, message_id=marker
        )
        dead = await wait_for(dead_letter_of(base_settings, marker))
    assert dead.headers["x-failure-reason"] == "poison"
    assert dead.body == body


async def test_a_message_of_another_channel_is_poison(
    base_settings: Settings, engine: AsyncEngine, publisher: Publisher, clean_queues: None
) -> None:
    sender = ScriptedSender()
    async with running_worker(base_settings, sender):
        message = (await new_notification(engine)).model_copy(
            update={"notification_type": Channel.PUSH}
        )
        assert publisher.topology is not None
        await publisher.publish(
            publisher.topology.work_exchange,
            routing_key="email",
            body=message.to_bytes(),
            message_id=str(message.notification_id),
        )
        dead = await wait_for(dead_letter_of(base_settings, str(message.notification_id)))
    assert dead.headers["x-failure-reason"] == "poison"
    assert sender.sent == []


async def test_a_redelivered_delivered_message_is_acked_without_sending(
    base_settings: Settings, engine: AsyncEngine, publisher: Publisher, clean_queues: None
) -> None:
    sender = ScriptedSender()
    async with running_worker(base_settings, sender):
        message = await new_notification(engine)
        await publisher.publish_notification(message)
        await wait_for(status_is(engine, message.notification_id, "delivered"))
        before = consumed("duplicate")
        await publisher.publish_notification(message)  # what a redelivery looks like
        await wait_for(lambda: _gt(consumed("duplicate"), before))
    assert len(sender.sent) == 1


async def _gt(value: float, than: float) -> bool:
    return value > than


async def test_dlq_admin_lists_without_losing_and_replay_delivers(
    base_settings: Settings, engine: AsyncEngine, publisher: Publisher, clean_queues: None
) -> None:
    sender = ScriptedSender()
    async with running_worker(base_settings, sender) as (_, client):
        assert (await client.get("/admin/dlq")).status_code == 401
        first, second = await new_notification(engine), await new_notification(engine)
        for message in (first, second):
            sender.plan[message.notification_id] = [PermanentFailure("550 mailbox full")]
            await publisher.publish_notification(message)
            await wait_for(status_is(engine, message.notification_id, "failed"))
        await wait_for(dead_letter_of(base_settings, str(second.notification_id)))

        # Listing twice shows the same messages in the same order: nothing lost or reordered.
        listings = [(await client.get("/admin/dlq", headers=KEY)).json() for _ in range(2)]
        ids = [[m["message_id"] for m in listing["data"]] for listing in listings]
        assert ids[0] == ids[1] == [str(first.notification_id), str(second.notification_id)]
        assert listings[0]["meta"]["total"] == 2
        assert listings[0]["data"][0]["reason"] == "permanent_failure"
        assert listings[0]["data"][0]["error"] == "550 mailbox full"

        one = await client.get(f"/admin/dlq/{second.notification_id}", headers=KEY)
        assert one.status_code == 200
        assert one.json()["data"]["message"]["notification_id"] == str(second.notification_id)
        absent = await client.get("/admin/dlq/nope", headers=KEY)
        assert absent.status_code == 404 and absent.json()["error"] == "dead_letter_not_found"

        missing = await client.post("/admin/dlq/replay", json={"message_id": "nope"}, headers=KEY)
        assert missing.status_code == 404 and missing.json()["error"] == "dead_letter_not_found"

        replay = await client.post(
            "/admin/dlq/replay", json={"message_id": str(first.notification_id)}, headers=KEY
        )
        assert replay.status_code == 200
        assert replay.json()["data"] == {"replayed": [str(first.notification_id)], "skipped": []}
        row = await wait_for(status_is(engine, first.notification_id, "delivered"))
        assert row.attempts == 1

        remaining = (await client.get("/admin/dlq", headers=KEY)).json()
        assert [m["message_id"] for m in remaining["data"]] == [str(second.notification_id)]
    assert ("queued", 0, 1) in await history(engine, first.notification_id)
    assert ("delivered", 1, 1) in await history(engine, first.notification_id)
    assert [m.notification_id for m in sender.sent] == [first.notification_id]


async def test_replay_all_and_purge_touch_only_this_channel(
    base_settings: Settings, engine: AsyncEngine, publisher: Publisher, clean_queues: None
) -> None:
    sender = ScriptedSender()
    async with running_worker(base_settings, sender) as (_, client):
        failed = await new_notification(engine)
        sender.plan[failed.notification_id] = [PermanentFailure("554 rejected")]
        await publisher.publish_notification(failed)
        await wait_for(status_is(engine, failed.notification_id, "failed"))
        await wait_for(dead_letter_of(base_settings, str(failed.notification_id)))
        push_marker = uuid.uuid4().hex
        await publisher.publish_to_queue(
            FAILED_QUEUE,
            b"{}",
            message_id=push_marker,
            headers={"x-original-routing-key": "push", "x-failure-reason": "poison"},
        )

        replay = (await client.post("/admin/dlq/replay", headers=KEY)).json()
        assert replay["data"]["replayed"] == [str(failed.notification_id)]
        await wait_for(status_is(engine, failed.notification_id, "delivered"))

        poison = uuid.uuid4().hex
        assert publisher.topology is not None
        await publisher.publish(
            publisher.topology.work_exchange, routing_key="email", body=b"x", message_id=poison
        )
        await wait_for(dead_letter_of(base_settings, poison))
        replay = (await client.post("/admin/dlq/replay", json={}, headers=KEY)).json()
        assert replay["data"] == {
            "replayed": [],
            "skipped": [{"message_id": poison, "reason": "unparseable"}],
        }

        purged = (await client.delete("/admin/dlq", headers=KEY)).json()
        assert purged["data"] == {"purged": 1}
    left = [m.message_id for m in await dead_letters(base_settings)]
    assert left == [push_marker]


async def test_shutdown_finishes_the_message_in_hand(
    base_settings: Settings, engine: AsyncEngine, publisher: Publisher, clean_queues: None
) -> None:
    sender = ScriptedSender(gate=asyncio.Event())
    message = await new_notification(engine)
    async with running_worker(base_settings, sender) as (app, client):
        await publisher.publish_notification(message)
        await wait_for(status_is(engine, message.notification_id, "processing"))
        runtime = app.state.runtime
        stopping = asyncio.create_task(runtime.stop())
        await wait_for(lambda: _health_code(client, 503))
        assert sender.gate is not None
        sender.gate.set()
        await stopping
    assert (await status_row(engine, message.notification_id)).status == "delivered"
    assert len(sender.sent) == 1


async def _health_code(client: httpx.AsyncClient, code: int) -> bool:
    return (await client.get("/health")).status_code == code


async def test_a_message_still_in_hand_at_the_deadline_is_redelivered_and_sent_once(
    base_settings: Settings, engine: AsyncEngine, publisher: Publisher, clean_queues: None
) -> None:
    settings = base_settings.model_copy(update={"worker_shutdown_seconds": 0.2})
    stuck = ScriptedSender(gate=asyncio.Event())  # never opens: the provider hangs
    message = await new_notification(engine)
    async with running_worker(settings, stuck):
        await publisher.publish_notification(message)
        await wait_for(status_is(engine, message.notification_id, "processing"))
    assert stuck.sent == []

    sender = ScriptedSender()
    async with running_worker(settings, sender):
        await wait_for(status_is(engine, message.notification_id, "delivered"))
    assert [m.notification_id for m in sender.sent] == [message.notification_id]


async def test_a_copy_takes_over_when_the_holder_of_its_claim_died(
    base_settings: Settings, engine: AsyncEngine, publisher: Publisher, clean_queues: None
) -> None:
    """A worker SIGKILLed mid-send leaves its claim leased and its message redelivered: the
    copy must neither send while the lease runs nor wait for the reconciler after it lapses."""
    message = await new_notification(engine)
    pool = await create_asyncpg_pool(base_settings, application_name="dead_worker")
    try:  # the dead worker: it claimed the notification, then vanished without a word
        claims = await StatusStore(pool).claim(
            [(message.notification_id, message.attempt)], lease_seconds=1.5, max_claims=5
        )
    finally:
        await pool.close()
    lease_until = (await status_row(engine, message.notification_id)).lease_until
    sender = ScriptedSender()
    async with running_worker(base_settings, sender):
        await publisher.publish_notification(message)  # the broker's redelivery
        row = await wait_for(status_is(engine, message.notification_id, "delivered"))
    assert claims[message.notification_id].token is not None
    assert [m.notification_id for m in sender.sent] == [message.notification_id]
    assert sender.attempts[0].token != claims[message.notification_id].token
    assert row.delivered_at >= lease_until


async def test_a_message_whose_handling_keeps_failing_ends_failed_not_in_a_loop(
    base_settings: Settings, engine: AsyncEngine, publisher: Publisher, clean_queues: None
) -> None:
    settings = base_settings.model_copy(update={"max_claims_per_attempt": 3})
    message = await new_notification(engine)
    sender = ScriptedSender()
    sender.plan[message.notification_id] = [ValueError("a bug in handling")] * 10
    pool = await create_asyncpg_pool(settings, application_name="test_worker")
    runtime = ConsumerRuntime(
        settings=settings,
        channel=Channel.EMAIL,
        sender=sender,
        status_store=StatusStore(pool),
        service="test_worker",
    )
    runtime.requeue_pause_seconds = 0.01
    await runtime.start()
    try:
        await publisher.publish_notification(message)
        dead = await wait_for(dead_letter_of(base_settings, str(message.notification_id)))
        row = await wait_for(status_is(engine, message.notification_id, "failed"))
    finally:
        await runtime.stop()
        await pool.close()
    assert dead.headers["x-failure-reason"] == "handler_error"
    assert row.status_reason == "handler_error"
    # Three claims ran (and failed); the fourth failed the notification without sending.
    assert len(sender.attempts) == 3


async def test_two_copies_in_hand_at_once_are_sent_once(
    base_settings: Settings, engine: AsyncEngine, publisher: Publisher, clean_queues: None
) -> None:
    sender = ScriptedSender(gate=asyncio.Event())
    before = suppressed()
    async with running_worker(base_settings, sender):
        messages = [await new_notification(engine) for _ in range(20)]
        for message in messages:  # two copies of each, published together
            await publisher.publish_notification(message)
            await publisher.publish_notification(message)
        await wait_for(lambda: _gt(suppressed(), before + 19))
        assert sender.gate is not None
        sender.gate.set()
        for message in messages:
            await wait_for(status_is(engine, message.notification_id, "delivered"))
    assert sorted(str(m.notification_id) for m in sender.sent) == sorted(
        str(m.notification_id) for m in messages
    )
    assert suppressed() - before == 20


async def test_a_send_longer_than_the_lease_keeps_its_claim(
    base_settings: Settings, engine: AsyncEngine, publisher: Publisher, clean_queues: None
) -> None:
    settings = base_settings.model_copy(update={"claim_lease_seconds": 0.6})
    sender = ScriptedSender(gate=asyncio.Event())
    async with running_worker(settings, sender):
        message = await new_notification(engine)
        await publisher.publish_notification(message)
        first = await wait_for(status_is(engine, message.notification_id, "processing"))

        async def extended() -> bool:
            row = await status_row(engine, message.notification_id)
            return bool(row.lease_until > first.lease_until + timedelta(seconds=1))

        # Extended past several leases' length: the claim is kept alive while the send runs.
        await wait_for(extended, timeout=10)
        copy_before = suppressed()
        await publisher.publish_notification(message)
        await wait_for(lambda: _gt(suppressed(), copy_before))
        assert sender.gate is not None
        sender.gate.set()
        await wait_for(status_is(engine, message.notification_id, "delivered"))
    assert len(sender.sent) == 1


async def test_a_provider_that_fails_every_send_pauses_consuming_until_it_answers(
    base_settings: Settings, engine: AsyncEngine, publisher: Publisher, clean_queues: None
) -> None:
    settings = base_settings.model_copy(
        update={"provider_failure_threshold": 2, "provider_probe_seconds": 0.1}
    )
    sender = ScriptedSender(up=False)
    async with running_worker(settings, sender) as (app, client):
        down = [await new_notification(engine) for _ in range(2)]
        for message in down:
            sender.plan[message.notification_id] = [
                TransientFailure("connection refused", provider_down=True)
            ]
            await publisher.publish_notification(message)
        runtime = app.state.runtime
        await wait_for(lambda: _true(runtime.is_paused))
        assert provider_up() == 0
        # Paused, not broken: health still answers, and the probe keeps asking.
        assert (await client.get("/health")).status_code == 200
        waiting = await new_notification(engine)
        await publisher.publish_notification(waiting)
        probes = sender.probes
        await wait_for(lambda: _true(sender.probes > probes + 2))
        assert (await status_row(engine, waiting.notification_id)).status == "queued"
        sender.up = True
        for message in [*down, waiting]:
            row = await wait_for(status_is(engine, message.notification_id, "delivered"))
            assert row.status == "delivered"
        assert not runtime.is_paused and provider_up() == 1
    # The waiting message spent no attempt while the worker was paused.
    assert (await status_row(engine, waiting.notification_id)).attempts == 1


async def test_an_uncertain_outcome_is_retried_and_counted(
    base_settings: Settings, engine: AsyncEngine, publisher: Publisher, clean_queues: None
) -> None:
    before = (
        REGISTRY.get_sample_value("notification_uncertain_deliveries_total", {"channel": "email"})
        or 0.0
    )
    sender = ScriptedSender()
    async with running_worker(base_settings, sender):
        message = await new_notification(engine)
        sender.plan[message.notification_id] = [UncertainDelivery("SMTP outcome unknown")]
        await publisher.publish_notification(message)
        await wait_for(status_is(engine, message.notification_id, "delivered"))
    after = REGISTRY.get_sample_value(
        "notification_uncertain_deliveries_total", {"channel": "email"}
    )
    assert after == before + 1
    assert [m.attempt for m in sender.sent] == [2]


async def test_an_expired_notification_is_not_sent(
    base_settings: Settings, engine: AsyncEngine, publisher: Publisher, clean_queues: None
) -> None:
    sender = ScriptedSender()
    async with running_worker(base_settings, sender):
        late = await new_notification(engine, expires_in_seconds=-1)
        timely = await new_notification(engine, expires_in_seconds=3600)
        await publisher.publish_notification(late)
        await publisher.publish_notification(timely)
        row = await wait_for(status_is(engine, late.notification_id, "expired"))
        await wait_for(status_is(engine, timely.notification_id, "delivered"))
    assert row.status_reason == "expired"
    assert [m.notification_id for m in sender.sent] == [timely.notification_id]
    (attempt,) = [a for a in sender.attempts if a.notification_id == timely.notification_id]
    assert attempt.expires_in_seconds is not None and 3500 < attempt.expires_in_seconds <= 3600


def suppressed() -> float:
    return (
        REGISTRY.get_sample_value(
            "notification_duplicate_deliveries_suppressed_total", {"channel": "email"}
        )
        or 0.0
    )


def provider_up() -> float | None:
    return REGISTRY.get_sample_value("notification_provider_up", {"channel": "email"})


async def _true(value: bool) -> bool:
    return value


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("120", 120.0),
        ("Wed, 25 Nov 2026 10:01:00 GMT", 60.0),
        ("Wed, 25 Nov 2026 09:00:00 GMT", None),
        ("soon", None),
        ("", None),
        (None, None),
        ("99999999", 86400.0),
    ],
)
def test_retry_after_accepts_seconds_and_http_dates(
    header: str | None, expected: float | None
) -> None:
    now = datetime(2026, 11, 25, 10, 0, 0, tzinfo=UTC)
    assert parse_retry_after(header, now=now) == expected
