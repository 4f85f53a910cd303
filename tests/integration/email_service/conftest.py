"""The email worker in-process against real RabbitMQ, PostgreSQL and an aiosmtpd inbox.

The template service is not infrastructure, so a stand-in with `TemplateClient`'s interface
serves the versions; everything else is real.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aio_pika
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from devtools.smtp_inbox import SmtpInbox
from devtools.stack import free_port
from services.email_service.app import create_app
from shared.contracts import TemplateVersion
from shared.messaging.message import Channel, NotificationMessage, Recipient, TemplateRef
from shared.messaging.publisher import Publisher
from shared.messaging.topology import declare_topology
from shared.notification_status import notification_statuses
from shared.settings import Settings
from shared.template_client import TemplateNotFound, TemplateServiceUnavailable

WELCOME = TemplateVersion(
    code="welcome",
    channel="email",
    locale="en",
    version=3,
    name="Welcome",
    subject="Welcome, {{ name }}!",
    text_body="Hi {{ name }}, start here: {{ link }}",
    html_body="<p>Hi <b>{{ name }}</b>, <a href='{{ link }}'>start here</a></p>",
    variables=["name", "link"],
)


@dataclass
class Templates:
    """Serves versions like `TemplateClient.get_version`; `down` plays an outage."""

    versions: dict[tuple[str, int], TemplateVersion] = field(
        default_factory=lambda: {("welcome", 3): WELCOME}
    )
    down: bool = False
    closed: bool = False

    async def get_version(
        self, code: str, channel: str, locale: str | None, version: int
    ) -> TemplateVersion:
        if self.down:
            raise TemplateServiceUnavailable("the template service is unreachable (ConnectError)")
        try:
            return self.versions[(code, version)]
        except KeyError:
            raise TemplateNotFound("no such template") from None

    async def aclose(self) -> None:
        self.closed = True


@dataclass
class EmailWorker:
    app: FastAPI
    client: httpx.AsyncClient
    inbox: SmtpInbox
    templates: Templates
    settings: Settings
    engine: AsyncEngine
    publisher: Publisher

    async def notify(self, **changes: Any) -> NotificationMessage:
        """Insert a `queued` status row, then publish its message (as the gateway does)."""
        message = new_message(**changes)
        async with self.engine.begin() as conn:
            await conn.execute(
                insert(notification_statuses).values(
                    id=message.notification_id,
                    notification_type="email",
                    user_id=message.user_id,
                    template_code=message.template.code,
                    template_version=message.template.version,
                    status="queued",
                )
            )
        await self.publisher.publish_notification(message)
        return message

    async def row(self, notification_id: uuid.UUID) -> Any:
        async with self.engine.connect() as conn:
            return (
                await conn.execute(
                    select(notification_statuses).where(
                        notification_statuses.c.id == notification_id
                    )
                )
            ).one()

    def status_is(self, notification_id: uuid.UUID, *statuses: str) -> Callable[[], Any]:
        async def check() -> Any:
            row = await self.row(notification_id)
            return row if row.status in statuses else None

        return check

    def received(self, count: int) -> Callable[[], Any]:
        async def check() -> Any:
            return len(self.inbox.inbox.messages) >= count

        return check


def new_message(**changes: Any) -> NotificationMessage:
    values: dict[str, Any] = {
        "notification_id": uuid.uuid4(),
        "notification_type": Channel.EMAIL,
        "user_id": uuid.uuid4(),
        "recipient": Recipient(name="Ada", email="ada@example.com"),
        "template": TemplateRef(code="welcome", version=3, locale="en"),
        "variables": {"name": "Ada", "link": "https://example.com/start"},
        "correlation_id": uuid.uuid4().hex,
        "created_at": datetime.now(UTC),
    }
    values.update(changes)
    return NotificationMessage(**values)


@pytest.fixture(scope="package")
def base_settings(base_settings: Settings, make_vhost: Callable[[str], str]) -> Settings:
    """The run's settings on a RabbitMQ vhost of this package's own: the end-to-end stack runs
    a real email worker, which on a shared vhost would consume these tests' messages."""
    return base_settings.model_copy(update={"rabbitmq_url": make_vhost("email")})


@pytest.fixture
def worker_settings(base_settings: Settings) -> Settings:
    return base_settings.model_copy(
        update={
            "smtp_port": free_port(),
            "smtp_pool_size": 2,
            "email_from_address": "notifications@example.com",
            "public_base_url": "https://notify.example.com/",
            "unsubscribe_mailto": "unsubscribe@example.com",
            # No user service here: the delivery-time contact check is covered end to end.
            "delivery_policy_check": False,
        }
    )


@pytest.fixture
async def worker(
    worker_settings: Settings, engine: AsyncEngine, publisher: Publisher
) -> AsyncIterator[EmailWorker]:
    await _empty_queues(worker_settings)
    templates = Templates()
    async with SmtpInbox(port=worker_settings.smtp_port) as inbox:
        app = create_app(worker_settings, templates=templates)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                yield EmailWorker(app, client, inbox, templates, worker_settings, engine, publisher)
    assert templates.closed


async def _empty_queues(settings: Settings) -> None:
    """Other tests share this run's vhost: start from empty email and failed queues."""
    connection = await aio_pika.connect(settings.rabbitmq_url)
    try:
        channel = await connection.channel()
        topology = await declare_topology(channel, settings.retry_delay_levels_ms)
        await topology.work_queues[Channel.EMAIL].purge()
        await topology.failed_queue.purge()
    finally:
        await connection.close()
