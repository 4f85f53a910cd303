"""Fixtures for the gateway: its own RabbitMQ vhost, stand-in upstreams, the app in-process.

Each gateway test gets a fresh app (its lifespan starts the pools, the publisher and the
relay), talking to real PostgreSQL, Redis and RabbitMQ, and to the user/template stand-ins in
`upstream.py` over real HTTP.
"""

from __future__ import annotations

import secrets
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aio_pika
import httpx
import pytest
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, AbstractRobustConnection
from fastapi import FastAPI

from services.api_gateway.api_keys import store_key
from services.api_gateway.app import create_app
from services.api_gateway.deps import Gateway
from services.api_gateway.settings import GatewaySettings
from shared.messaging.topology import WORK_EXCHANGE, declare_topology
from shared.settings import Settings
from tests.conftest import RUN_ID
from tests.integration.api_gateway.upstream import Upstream


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="session")
def gateway_vhost_url(base_settings: Settings) -> Iterator[str]:
    """A vhost of the gateway tests' own, so no worker of another test eats our messages."""
    vhost = f"notif_test_{RUN_ID}_gw"
    _rabbitmqctl("add_vhost", vhost)
    _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    try:
        yield f"amqp://guest:guest@127.0.0.1:5672/{vhost}?reconnect_interval=0.3"
    finally:
        _rabbitmqctl("delete_vhost", vhost)


@pytest.fixture
async def upstream(base_settings: Settings) -> AsyncIterator[Upstream]:
    server = Upstream(
        base_settings.internal_api_key.get_secret_value(), base_settings.user_service_url
    )
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
def gw_settings(
    base_settings: Settings, gateway_vhost_url: str, upstream: Upstream
) -> Callable[..., GatewaySettings]:
    def build(**overrides: Any) -> GatewaySettings:
        values = base_settings.model_dump()
        values.update(
            rabbitmq_url=gateway_vhost_url,
            user_service_url=upstream.url,
            template_service_url=upstream.url,
            breaker_reset_seconds=0.5,
            breaker_failure_threshold=3,
            gateway_dependency_backoff_ms=10,
            outbox_inline_grace_seconds=2.0,
            outbox_poll_interval_seconds=0.1,
            gateway_inline_publish_timeout_seconds=1.0,
            publish_timeout_seconds=1.0,
            redis_key_prefix=f"{base_settings.redis_key_prefix}gw-{uuid.uuid4().hex[:6]}:",
        )
        values.update(overrides)
        return GatewaySettings.model_validate(values)

    return build


@dataclass
class Running:
    app: FastAPI
    client: httpx.AsyncClient
    api_key: str
    headers: dict[str, str]

    @property
    def gateway(self) -> Gateway:
        gateway: Gateway = self.app.state.gateway
        return gateway

    async def new_key(self, *, rate_limit: int | None = None) -> dict[str, str]:
        raw = "test-" + secrets.token_urlsafe(24)
        await store_key(self.gateway.pool, raw, name="test", rate_limit_per_minute=rate_limit)
        return {"Authorization": f"Bearer {raw}"}


@asynccontextmanager
async def running_gateway(settings: GatewaySettings) -> AsyncIterator[Running]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            raw = "test-" + secrets.token_urlsafe(24)
            await store_key(app.state.gateway.pool, raw, name="test")
            yield Running(app, client, raw, {"Authorization": f"Bearer {raw}"})


@pytest.fixture
def start_gateway() -> Callable[[GatewaySettings], AbstractAsyncContextManager[Running]]:
    return running_gateway


@pytest.fixture
async def gw(
    gw_settings: Callable[..., GatewaySettings], upstream: Upstream
) -> AsyncIterator[Running]:
    upstream.add_template("welcome", "email")
    upstream.add_template("welcome", "push")
    async with running_gateway(gw_settings()) as running:
        yield running


class Tap:
    """A private queue bound to the work exchange: sees a copy of every published message."""

    def __init__(self, connection: AbstractRobustConnection, queue: AbstractQueue) -> None:
        self.connection = connection
        self.queue = queue
        self.messages: list[AbstractIncomingMessage] = []

    async def drain(self) -> list[AbstractIncomingMessage]:
        while (message := await self.queue.get(fail=False, no_ack=True)) is not None:
            self.messages.append(message)
        return self.messages

    def ids(self) -> list[str]:
        return [str(m.message_id) for m in self.messages]


@pytest.fixture
async def tap(base_settings: Settings, gateway_vhost_url: str) -> AsyncIterator[Tap]:
    connection = await aio_pika.connect_robust(gateway_vhost_url)
    channel = await connection.channel()
    await declare_topology(channel, base_settings.retry_delay_levels_ms)
    exchange = await channel.get_exchange(WORK_EXCHANGE)
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(exchange, routing_key="email")
    await queue.bind(exchange, routing_key="push")
    try:
        yield Tap(connection, queue)
    finally:
        await connection.close()


def send_body(user_id: uuid.UUID, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "notification_type": "email",
        "user_id": str(user_id),
        "template_code": "welcome",
        "variables": {"name": "Ada", "link": "https://example.com/start"},
    }
    body.update(overrides)
    return body
