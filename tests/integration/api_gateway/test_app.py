"""Health, metrics, the OpenAPI document, the demo seed and the API key CLI."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import asyncpg

from devtools.stack import settings_env
from services.api_gateway.seed import seed_demo
from shared.db import asyncpg_dsn
from shared.settings import Settings
from tests.integration.api_gateway.conftest import Running, send_body
from tests.integration.api_gateway.upstream import Upstream

ROOT = Path(__file__).resolve().parents[3]


async def test_health_reports_each_dependency(gw: Running) -> None:
    response = await gw.client.get("/health")
    assert response.status_code == 200
    assert response.json()["data"]["checks"] == {"db": "up", "redis": "up", "broker": "up"}


async def test_metrics_are_prometheus_text(gw: Running, upstream: Upstream) -> None:
    await gw.client.post(
        "/v1/notifications/send", json=send_body(upstream.add_user()), headers=gw.headers
    )
    response = await gw.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "notifications_gateway_accepted_total" in response.text
    assert "notifications_gateway_outbox_published_total" in response.text


async def test_openapi_documents_both_send_contracts_and_the_idempotency_window(
    gw: Running,
) -> None:
    spec = (await gw.client.get("/openapi.json")).json()
    assert {"/v1/notifications/send", "/api/v1/notifications/"} <= spec["paths"].keys()
    params = spec["paths"]["/v1/notifications/send"]["post"]["parameters"]
    idem = next(p for p in params if p["name"] == "Idempotency-Key")
    assert "24 hours" in idem["description"]
    assert (await gw.client.get("/docs")).status_code == 200


async def test_seed_demo_is_idempotent_and_the_demo_key_works(
    gw: Running, upstream: Upstream, base_settings: Settings
) -> None:
    await seed_demo(base_settings)
    second = await seed_demo(base_settings)
    assert second == {"api_key_name": "demo", "created": False}
    conn = await asyncpg.connect(asyncpg_dsn(base_settings.database_url))
    try:
        count = await conn.fetchval("SELECT count(*) FROM api_gateway.api_keys WHERE name = 'demo'")
    finally:
        await conn.close()
    assert count == 1
    demo = base_settings.demo_api_key.get_secret_value()
    response = await gw.client.post(
        "/v1/notifications/send",
        json=send_body(upstream.add_user()),
        headers={"X-API-Key": demo},
    )
    assert response.status_code == 202


async def test_cli_creates_a_key_printed_once_that_authenticates(
    gw: Running, upstream: Upstream, base_settings: Settings
) -> None:
    env = {**os.environ, **settings_env(base_settings)}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.api_gateway.api_keys",
        "create",
        "--name",
        "cli-test",
        "--rate-limit",
        "100",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, stderr.decode()
    key = stdout.decode().strip()
    assert key.startswith("ngw_") and len(key) > 40
    response = await gw.client.post(
        "/v1/notifications/send",
        json=send_body(upstream.add_user()),
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 202
    assert response.headers["ratelimit-limit"] == "100"
    conn = await asyncpg.connect(asyncpg_dsn(base_settings.database_url))
    try:
        stored = await conn.fetchval(
            "SELECT key_hash FROM api_gateway.api_keys WHERE name = 'cli-test'"
        )
    finally:
        await conn.close()
    assert stored != key and len(stored) == 64  # only the hash is kept


async def test_database_unavailable_is_503_with_retry_after(
    gw: Running, upstream: Upstream
) -> None:
    await gw.gateway.pool.close()  # what the request sees when PostgreSQL is gone
    response = await gw.client.post(
        "/v1/notifications/send", json=send_body(upstream.add_user()), headers=gw.headers
    )
    assert response.status_code == 503
    assert response.json()["error"] == "dependency_unavailable"
    assert response.headers["retry-after"] == "1"
