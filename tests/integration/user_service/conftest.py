"""Fixtures for the user service: the app in-process against this run's real PostgreSQL and
Redis (from `base_settings`), with the cheap Argon2 profile so tests do not spend seconds
hashing."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.user_service.accounts import Accounts
from services.user_service.app import create_app
from services.user_service.settings import UserServiceSettings
from shared.settings import Settings
from tests.conftest import relaxed_user_service
from tests.identity import PASSWORD

INTERNAL = "/internal/v1"
API = "/api/v1"

__all__ = ["API", "INTERNAL", "PASSWORD"]


@pytest.fixture(scope="session")
def us_settings(base_settings: Settings) -> UserServiceSettings:
    return relaxed_user_service(base_settings)


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The app with its lifespan, and a client that talks to it in-process."""
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://test") as client,
    ):
        yield app, client


@pytest.fixture
async def app_client(
    us_settings: UserServiceSettings,
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    async with running(us_settings) as pair:
        yield pair


@pytest.fixture
def app(app_client: tuple[FastAPI, httpx.AsyncClient]) -> FastAPI:
    return app_client[0]


@pytest.fixture
def client(app_client: tuple[FastAPI, httpx.AsyncClient]) -> httpx.AsyncClient:
    return app_client[1]


@pytest.fixture
def internal_headers(us_settings: UserServiceSettings) -> dict[str, str]:
    return {"X-Internal-API-Key": us_settings.internal_api_key.get_secret_value()}


def unique_email(tag: str = "user") -> str:
    return f"{tag}-{uuid.uuid4().hex[:12]}@example.com"


@dataclass
class Account:
    id: uuid.UUID
    email: str
    password: str
    token: str
    data: dict[str, Any]
    refresh_token: str = ""

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


Register = Callable[..., Any]


@pytest.fixture
def register(client: httpx.AsyncClient) -> Register:
    """Register through the API and log in; returns an `Account`."""

    async def _register(**overrides: Any) -> Account:
        body = {"name": "Ada Lovelace", "email": unique_email(), "password": PASSWORD, **overrides}
        response = await client.post(f"{API}/users", json=body)
        assert response.status_code == 201, response.text
        login = await client.post(
            f"{API}/auth/login", json={"email": body["email"], "password": body["password"]}
        )
        assert login.status_code == 200, login.text
        data = response.json()["data"]
        tokens = login.json()["data"]
        return Account(
            id=uuid.UUID(data["id"]),
            email=body["email"],
            password=body["password"],
            token=tokens["access_token"],
            data=data,
            refresh_token=tokens["refresh_token"],
        )

    return _register


@pytest.fixture
async def admin(app: FastAPI, client: httpx.AsyncClient) -> Account:
    """An admin made through the use case (the public API never grants the role), logged in
    through the API."""
    accounts: Accounts = app.state.accounts
    email = unique_email("admin")
    user, _ = await accounts.create_user(name="Admin", email=email, password=PASSWORD, role="admin")
    login = await client.post(f"{API}/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    tokens = login.json()["data"]
    return Account(
        id=user.id,
        email=email,
        password=PASSWORD,
        token=tokens["access_token"],
        data={},
        refresh_token=tokens["refresh_token"],
    )
