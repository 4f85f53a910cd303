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
from datetime import UTC, datetime
from typing import Any

import aio_pika
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from shared.messaging.consumer import DeliveryResult, PermanentFailure, TransientFailure
from shared.messaging.message import Channel, NotificationMessage, Recipient, TemplateRef
from shared.messaging.publisher import Publisher
from shared.messaging.topology import FAILED_QUEUE, declare_topology
from shared.messaging.worker import create_worker_app
from shared.notification_status import notification_status_history, notification_statuses
from shared.settings import Settings
from tests.conftest import wait_for

KEY = {"X-Internal-API-Key": "test-internal-key"}

Behaviour = Callable[[NotificationMessage], Any]


@dataclass
class ScriptedSender:
    """Plays the provider: `plan[notification_id]` is a list of outcomes, one per attempt."""

    plan: dict[uuid.UUID, list[Any]] = field(default_factory=dict)
    sent: list[NotificationMessage] = field(default_factory=list)
    gate: asyncio.Event | None = None
    closed: bool = False

    async def deliver(self, message: NotificationMessage) -> DeliveryResult:
        if self.gate is not None:
            await self.gate.wait()
        outcomes = self.plan.get(message.notification_id, [])
        outcome = outcomes.pop(0) if outcomes else None
        if isinstance(outcome, Exception):
            raise outcome
        self.sent.append(message)
        return DeliveryResult(provider_message_id=f"prov-{message.notification_id}")

    async def aclose(self) -> None:
        self.closed = True


@pytest.fixture(scope="module")
async def engine(base_settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(base_settings.database_url)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="module")
async def publisher(base_settings: Settings) -> AsyncIterator[Publisher]:
    publisher = Publisher(base_settings, connection_name="test-runtime-publisher")
    await publisher.connect()
    yield publisher
    await publisher.close()


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


async def new_notification(engine: AsyncEngine) -> NotificationMessage:
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
