"""A push worker against real RabbitMQ and PostgreSQL, the FCM stand-in and a user-service stub.

The stand-in and the stub run in-process under uvicorn on free ports; the template service is
replaced by a fake holding real `TemplateVersion`s (it is not infrastructure). The module gets
its own RabbitMQ vhost, so no other test's messages reach this worker's queues.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from devtools.fcm_standin import create_app as create_standin
from devtools.fcm_standin import serve_in_process
from devtools.stack import free_port
from services.push_service.app import create_app
from services.push_service.credentials import make_service_account
from shared.contracts import TemplateVersion
from shared.envelope import ok
from shared.messaging.message import (
    Channel,
    DeviceTarget,
    NotificationMessage,
    Recipient,
    TemplateRef,
)
from shared.messaging.publisher import Publisher
from shared.notification_status import (
    notification_device_results,
    notification_status_history,
    notification_statuses,
)
from shared.settings import Settings
from shared.template_client import TemplateNotFound

PROJECT = "push-test"
INTERNAL_KEY = "test-internal-key"


@pytest.fixture(scope="module")
def base_settings(base_settings: Settings, make_vhost: Callable[[str], str]) -> Settings:
    """`base_settings` on a vhost of this module's own. The stub user service here serves
    device removal only, so the delivery-time contact check is off (the end-to-end tests cover
    it against the real user service)."""
    return base_settings.model_copy(
        update={"rabbitmq_url": make_vhost("push"), "delivery_policy_check": False}
    )


@pytest.fixture(scope="module")
def service_account_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One RSA key for the module (generating one costs ~0.1 s); the token_uri is set per test."""
    path = tmp_path_factory.mktemp("fcm") / "account.json"
    path.write_text(json.dumps(make_service_account(project_id=PROJECT, token_uri="unset")))
    return path


@pytest.fixture(scope="module")
def service_account(service_account_path: Path) -> dict[str, str]:
    account: dict[str, str] = json.loads(service_account_path.read_text())
    return account


class FakeTemplates:
    """Plays the template service's client: real `TemplateVersion`s, kept in a dict."""

    def __init__(self) -> None:
        self.versions = {
            ("welcome", 1): TemplateVersion(
                code="welcome",
                channel="push",
                locale="en",
                version=1,
                name="Welcome",
                title="Welcome, {{ name }}!",
                body="Hello {{ name }}, tap to start.",
                image_url="https://img.example/{{ name | lower }}.png",
                data={"screen": "home", "user": "{{ name }}"},
                variables=["name"],
            )
        }

    async def get_version(
        self, code: str, channel: str, locale: str | None, version: int
    ) -> TemplateVersion:
        try:
            return self.versions[(code, version)]
        except KeyError:
            raise TemplateNotFound(f"no template {code} v{version}") from None

    async def aclose(self) -> None:
        return None


@dataclass
class UserServiceStub:
    """Stands for the user service's device-removal endpoint; records what it was asked."""

    url: str
    removed: list[tuple[str, str | None]] = field(default_factory=list)


@pytest.fixture
async def users() -> AsyncIterator[UserServiceStub]:
    port = free_port()
    stub = UserServiceStub(f"http://127.0.0.1:{port}")
    app = FastAPI()

    @app.post("/internal/v1/devices/remove")
    async def remove(request: Request) -> dict[str, Any]:
        token = (await request.json())["token"]
        stub.removed.append((token, request.headers.get("x-internal-api-key")))
        return ok({"removed": True})

    async with serve_in_process(app, port=port):
        yield stub


@dataclass
class PushHarness:
    app: FastAPI
    client: httpx.AsyncClient
    standin: httpx.AsyncClient
    engine: AsyncEngine
    publisher: Publisher

    async def notify(self, *devices: DeviceTarget | str, code: str = "welcome") -> uuid.UUID:
        """Insert the `queued` status row, then publish, as the gateway does."""
        targets = [DeviceTarget(token=d) if isinstance(d, str) else d for d in devices]
        message = NotificationMessage(
            notification_id=uuid.uuid4(),
            notification_type=Channel.PUSH,
            user_id=uuid.uuid4(),
            recipient=Recipient(name="Ada", devices=targets),
            template=TemplateRef(code=code, version=1, locale="en"),
            variables={"name": "Ada", "link": "https://app.example/start"},
            correlation_id=uuid.uuid4().hex,
            created_at=datetime.now(UTC),
        )
        async with self.engine.begin() as conn:
            await conn.execute(
                insert(notification_statuses).values(
                    id=message.notification_id,
                    notification_type="push",
                    user_id=message.user_id,
                    template_code=code,
                    template_version=1,
                    locale="en",
                    status="queued",
                    payload=message.to_bytes(),
                )
            )
        await self.publisher.publish_notification(message)
        return message.notification_id

    async def status(self, notification_id: uuid.UUID) -> dict[str, Any]:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(notification_statuses).where(
                        notification_statuses.c.id == notification_id
                    )
                )
            ).one()
        return dict(row._mapping)

    async def settled(self, notification_id: uuid.UUID) -> dict[str, Any] | None:
        row = await self.status(notification_id)
        return row if row["status"] in ("delivered", "failed") else None

    async def history(self, notification_id: uuid.UUID) -> list[tuple[str, str | None]]:
        query = (
            select(notification_status_history.c.status, notification_status_history.c.detail)
            .where(notification_status_history.c.notification_id == notification_id)
            .order_by(notification_status_history.c.id)
        )
        async with self.engine.connect() as conn:
            return [(s, d) for s, d in await conn.execute(query)]

    async def device_results(self, notification_id: uuid.UUID) -> dict[str, tuple[str, str | None]]:
        table = notification_device_results
        query = select(table.c.device_token, table.c.status, table.c.error).where(
            table.c.notification_id == notification_id
        )
        async with self.engine.connect() as conn:
            return {t: (s, e) for t, s, e in await conn.execute(query)}

    async def fault(self, token: str, fault: str, **extra: Any) -> None:
        response = await self.standin.post(
            "/emulator/faults", json={"token": token, "fault": fault, **extra}
        )
        response.raise_for_status()

    async def received(self) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = (await self.standin.get("/emulator/messages")).json()[
            "data"
        ]
        return messages

    async def send_requests(self) -> list[dict[str, Any]]:
        requests: list[dict[str, Any]] = (await self.standin.get("/emulator/requests")).json()[
            "data"
        ]
        return requests

    async def stats(self) -> dict[str, int]:
        stats: dict[str, int] = (await self.standin.get("/emulator/stats")).json()["data"]
        return stats


@pytest.fixture
async def harness_factory(
    base_settings: Settings,
    engine: AsyncEngine,
    publisher: Publisher,
    service_account_path: Path,
    service_account: dict[str, str],
) -> AsyncIterator[Any]:
    """`async with harness_factory(user_service_url) as push:`: stand-in + worker, fresh."""
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def start(user_service_url: str) -> AsyncIterator[PushHarness]:
        port = free_port()
        standin_url = f"http://127.0.0.1:{port}"
        account = {**service_account, "token_uri": f"{standin_url}/token"}
        account_file = service_account_path.with_name(f"account-{port}.json")
        account_file.write_text(json.dumps(account))
        settings = base_settings.model_copy(
            update={
                "fcm_base_url": standin_url,
                "fcm_project_id": PROJECT,
                "fcm_service_account_file": str(account_file),
                "fcm_standin_port": port,
                "user_service_url": user_service_url,
                "fcm_concurrency": 4,
            }
        )
        app = create_app(settings, templates=FakeTemplates())
        async with (
            serve_in_process(create_standin([account]), port=port),
            httpx.AsyncClient(base_url=standin_url, timeout=10) as standin,
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                base_url="http://test",
                headers={"X-Internal-API-Key": INTERNAL_KEY},
            ) as client,
        ):
            yield PushHarness(app, client, standin, engine, publisher)

    yield start


@pytest.fixture
async def push(harness_factory: Any, users: UserServiceStub) -> AsyncIterator[PushHarness]:
    async with harness_factory(users.url) as harness:
        yield harness
