"""One whole stack for the security regressions, logging at DEBUG: the log test reads every
line it wrote, and the other tests attack it over real HTTP.

Tokens come from the user service's own login (the demo admin of `base_settings`), so these
tests do not depend on how tokens are made.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from scripts.seed import seed_all
from shared.devtools.stack import Stack, default_specs, settings_env
from shared.settings import Settings
from tests.e2e.conftest import stack_settings


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
        default_specs(settings), settings_env(settings), tmp_path_factory.mktemp("security-logs")
    )
    running.start()
    try:
        running.wait_healthy(timeout=60)
        yield SecurityStack(running, settings, seeded)
    finally:
        running.stop()
