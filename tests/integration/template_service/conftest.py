"""Fixtures for the template service: the app in-process, tokens, and unique codes."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from services.template_service.app import create_app
from services.template_service.settings import template_settings
from shared.settings import Settings
from tests.identity import bearer, create_account, mint_token


@pytest.fixture(scope="session")
async def ts_client(base_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    # Many tests render with the same two tokens: the per-user limit has its own test.
    settings = template_settings(base_settings).model_copy(
        update={"template_render_rate_limit_per_minute": 100_000}
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


@pytest.fixture(scope="session")
async def admin_id(base_settings: Settings) -> uuid.UUID:
    return await create_account(base_settings, role="admin")


@pytest.fixture(scope="session")
async def user_id(base_settings: Settings) -> uuid.UUID:
    return await create_account(base_settings, role="user")


# Tokens are minted per test: an access token lives 15 minutes, the session may last longer.
@pytest.fixture
def admin(base_settings: Settings, admin_id: uuid.UUID) -> dict[str, str]:
    return bearer(mint_token(base_settings, admin_id, "admin"))


@pytest.fixture
def user(base_settings: Settings, user_id: uuid.UUID) -> dict[str, str]:
    return bearer(mint_token(base_settings, user_id, "user"))


@pytest.fixture(scope="session")
def internal(base_settings: Settings) -> dict[str, str]:
    return {"X-Internal-API-Key": base_settings.internal_api_key.get_secret_value()}


@pytest.fixture
def code() -> str:
    """A code no other test uses (all tests share one database)."""
    return f"t-{uuid.uuid4().hex[:12]}"


def email_body(code: str, **overrides: Any) -> dict[str, Any]:
    body = {
        "code": code,
        "channel": "email",
        "name": "Welcome",
        "subject": "Welcome, {{ name }}!",
        "text_body": "Hi {{ name }}, start here: {{ link }}",
        "html_body": '<p>Hi {{ name }}, <a href="{{ link }}">start</a></p>',
    }
    body.update(overrides)
    return body


def push_body(code: str, **overrides: Any) -> dict[str, Any]:
    body = {
        "code": code,
        "channel": "push",
        "name": "Welcome",
        "title": "Welcome, {{ name }}!",
        "body": "Hi {{ name }}",
        "data": {"link": "{{ link }}"},
    }
    body.update(overrides)
    return body
