"""Fixtures for the regression tests of the security findings: the real services.

- `users`, `templates`, `user_service(...)`: the run's real user service (uvicorn,
  `base_settings.user_service_url`), a template service in-process that verifies tokens over
  HTTP against it, and user services of a test's own when it needs other limits.
- `security_stack`: one whole stack logging at DEBUG: the log test reads every line it wrote,
  and the other tests attack it over real HTTP. Its tokens come from the user service's own
  login (the demo admin), so those tests do not depend on how tokens are made.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from devtools.stack import Stack, default_specs
from scripts.seed import seed_all
from services.template_service.app import create_app as create_template_service
from services.user_service.app import create_app as create_user_service
from shared.settings import Settings
from tests.conftest import relaxed_user_service
from tests.e2e.conftest import stack_env, stack_settings
from tests.identity import PASSWORD
from tests.servers import serve_in_thread

API = "/api/v1"


@dataclass
class Session:
    """A registered, logged-in user of the user service."""

    id: uuid.UUID
    email: str
    password: str
    access_token: str
    refresh_token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


def unique_email(tag: str = "sec") -> str:
    return f"{tag}-{uuid.uuid4().hex[:12]}@example.com"


async def register(client: httpx.AsyncClient, **fields: Any) -> Session:
    """Register through the API and log in."""
    body = {"name": "Grace Hopper", "email": unique_email(), "password": PASSWORD, **fields}
    created = await client.post(f"{API}/users", json=body)
    assert created.status_code == 201, created.text
    return await login(
        client, body["email"], body["password"], uuid.UUID(created.json()["data"]["id"])
    )


async def login(
    client: httpx.AsyncClient, email: str, password: str, user_id: uuid.UUID
) -> Session:
    response = await client.post(f"{API}/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    tokens = response.json()["data"]
    return Session(user_id, email, password, tokens["access_token"], tokens["refresh_token"])


@contextmanager
def user_service(base: Settings, *, port: int | None = None, **overrides: Any) -> Iterator[str]:
    """A user service of the test's own (uvicorn, a free port unless given), on this run's
    database and signing key, with a Redis prefix of its own unless overridden (so no other
    test's attempts from 127.0.0.1 count against its limits); yields its base URL."""
    prefix = f"{base.redis_key_prefix}sec-{uuid.uuid4().hex[:8]}:"
    settings = relaxed_user_service(base).model_copy(
        update={"redis_key_prefix": prefix, **overrides}
    )
    with serve_in_thread(create_user_service(settings), settings, port=port) as url:
        yield url


@pytest.fixture
async def users(base_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the run's real user service."""
    async with httpx.AsyncClient(base_url=base_settings.user_service_url, timeout=10) as client:
        yield client


@pytest.fixture(scope="module")
async def templates(base_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the template service (in-process, verifying through the user service)."""
    app = create_template_service(base_settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


@dataclass(frozen=True)
class SecurityStack:
    stack: Stack
    settings: Settings
    seeded: dict[str, Any]

    def url(self, service: str) -> str:
        return str(getattr(self.settings, f"{service}_url"))

    async def login(self, email: str, password: str) -> dict[str, Any]:
        """The login answer's `data` (access token and whatever else it carries)."""
        async with httpx.AsyncClient(base_url=self.url("user_service"), timeout=10) as client:
            response = await client.post(
                "/api/v1/auth/login", json={"email": email, "password": password}
            )
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()["data"]
        return data

    async def register(self, **extra: Any) -> tuple[str, str, str]:
        """A new user: (user id, email, password); `extra` joins the registration body."""
        email = f"sec-{uuid.uuid4().hex[:12]}@example.com"
        password = f"Tangerine orbit {uuid.uuid4().hex[:10]} lantern"
        body = {"name": "Sec Tester", "email": email, "password": password, **extra}
        async with httpx.AsyncClient(base_url=self.url("user_service"), timeout=10) as client:
            response = await client.post("/api/v1/users", json=body)
        assert response.status_code == 201, response.text
        return str(response.json()["data"]["id"]), email, password

    async def user_headers(self, email: str, password: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {(await self.login(email, password))['access_token']}"}

    async def admin_headers(self) -> dict[str, str]:
        login = await self.login(
            self.settings.demo_admin_email, self.settings.demo_admin_password.get_secret_value()
        )
        return {"Authorization": f"Bearer {login['access_token']}"}


@pytest.fixture(scope="session")
def security_stack(
    base_settings: Settings,
    make_vhost: Callable[[str], str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[SecurityStack]:
    settings = stack_settings(base_settings, make_vhost("security")).model_copy(
        update={"log_level": "DEBUG"}
    )
    seeded = asyncio.run(seed_all(settings))
    running = Stack(
        default_specs(settings), stack_env(settings), tmp_path_factory.mktemp("security-logs")
    )
    running.start()
    try:
        running.wait_healthy(timeout=60)
        yield SecurityStack(running, settings, seeded)
    finally:
        running.stop()
