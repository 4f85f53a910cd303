"""Fixtures for the regression tests of the security findings: the real services.

The user service is the run's real one (uvicorn, `base_settings.user_service_url`); a test
that needs other limits serves its own with `user_service(...)`. The template service runs
in-process but verifies tokens over HTTP against the real user service, as in production.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from services.template_service.app import create_app as create_template_service
from services.user_service.app import create_app as create_user_service
from shared.settings import Settings
from tests.conftest import relaxed_user_service
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
