"""The client and the `notify` command against the real stack (the end-to-end fixtures: one
stack for this package), each test with an API key of its own so its list is its own."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml
from notifications_client import NotificationsClient

from devtools.fault_proxy import FaultProxy, Mode
from devtools.stack import Stack, default_specs, free_port, settings_env
from services.api_gateway.api_keys import generate_key, store_key
from shared.db import asyncpg_dsn
from shared.settings import Settings
from tests.e2e.conftest import seeded, stack, stack_settings_fixture

# The end-to-end fixtures, reused; and the dev tools these tests use, imported in this one place.
__all__ = [
    "FaultProxy",
    "Mode",
    "Stack",
    "default_specs",
    "free_port",
    "seeded",
    "settings_env",
    "stack",
    "stack_settings_fixture",
]

ROOT = Path(__file__).resolve().parents[2]
SPEC = yaml.safe_load((ROOT / "docs" / "openapi" / "api-gateway.yml").read_text())
NOTIFY = Path(sys.executable).parent / "notify"
WELCOME = {"name": "Ada", "link": "https://example.com/start"}


def spec_has(method: str, path: str) -> bool:
    """Whether the committed gateway contract has this operation: tests of features that have
    not landed yet are skipped on it, and run by themselves once `make openapi` adds them."""
    return method.lower() in SPEC["paths"].get(path, {})


def spec_has_query(method: str, path: str, name: str) -> bool:
    operation = SPEC["paths"].get(path, {}).get(method.lower(), {})
    return any(p["name"] == name for p in operation.get("parameters", []))


def spec_has_field(schema: str, name: str) -> bool:
    return name in SPEC["components"]["schemas"].get(schema, {}).get("properties", {})


async def _store_key(settings: Settings, raw: str, rate_limit_per_minute: int | None) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(settings.database_url))
    try:
        await store_key(
            conn,
            raw,
            name=f"client-test-{uuid.uuid4().hex[:8]}",
            rate_limit_per_minute=rate_limit_per_minute,
        )
    finally:
        await conn.close()


@pytest.fixture
def make_api_key(stack_settings_fixture: Settings) -> Callable[..., str]:
    """A fresh API key (optionally with its own per-minute rate limit)."""

    def make(rate_limit_per_minute: int | None = None) -> str:
        raw = generate_key()
        asyncio.run(_store_key(stack_settings_fixture, raw, rate_limit_per_minute))
        return raw

    return make


@pytest.fixture
def gateway_url(stack: Any, stack_settings_fixture: Settings) -> str:
    return stack_settings_fixture.api_gateway_url


@pytest.fixture
def api_key(make_api_key: Callable[..., str]) -> str:
    return make_api_key()


@pytest.fixture
def client(gateway_url: str, api_key: str) -> Iterator[NotificationsClient]:
    with NotificationsClient(gateway_url, api_key) as made:
        yield made


@pytest.fixture
def demo_user(seeded: dict[str, Any]) -> str:
    return str(seeded["user_service"]["demo_user_id"])


@pytest.fixture
def notify(gateway_url: str, api_key: str) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the installed `notify` command, configured through its environment variables."""

    def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        environment = {
            **os.environ,
            "NOTIFY_URL": gateway_url,
            "NOTIFY_API_KEY": api_key,
            **(env or {}),
        }
        return subprocess.run(
            [str(NOTIFY), *args],
            capture_output=True,
            text=True,
            env=environment,
            timeout=120,
        )

    return run
