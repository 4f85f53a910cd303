"""`/metrics` was open on every service. With `METRICS_BEARER_TOKEN` it needs that bearer
token; in production it stays closed until the token is set; the dev stack keeps it open."""

from __future__ import annotations

import importlib

import httpx
import pytest
from pydantic import SecretStr

from shared.settings import DEMO_DEFAULTS, Settings
from tests.security.conftest import SecurityStack

SERVICES = ("api_gateway", "user_service", "template_service", "email_service", "push_service")


async def _scrape(settings: Settings, service: str, headers: dict[str, str]) -> httpx.Response:
    app = importlib.import_module(f"services.{service}.app").create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.get("/metrics", headers=headers)


@pytest.mark.parametrize("service", SERVICES)
async def test_with_a_token_metrics_need_it(base_settings: Settings, service: str) -> None:
    token = SecretStr("scrape-me-0123456789")
    settings = base_settings.model_copy(update={"metrics_bearer_token": token})
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}):
        refused = await _scrape(settings, service, headers)
        assert refused.status_code == 401, headers
        assert refused.json()["error"] == "unauthorized"
        assert refused.headers["www-authenticate"] == "Bearer"
    allowed = await _scrape(settings, service, {"Authorization": "Bearer scrape-me-0123456789"})
    assert allowed.status_code == 200
    assert "notifications_http_requests_total" in allowed.text


async def test_in_production_metrics_are_closed_without_a_token(base_settings: Settings) -> None:
    # A production configuration the settings accept (no demo values, real secrets); the app
    # is only asked for /metrics, so nothing connects to the broker.
    production = base_settings.model_copy(
        update={
            "environment": "production",
            "internal_api_key": SecretStr("x" * 40),
            "unsubscribe_secret": SecretStr("u" * 40),
            "rabbitmq_url": "amqp://notifications:a-real-password@127.0.0.1:5672/",
            **dict.fromkeys(DEMO_DEFAULTS),
        }
    )
    response = await _scrape(production, "template_service", {})
    assert response.status_code == 401
    assert "METRICS_BEARER_TOKEN" in response.json()["message"]


async def test_the_dev_stack_keeps_metrics_open(security_stack: SecurityStack) -> None:
    async with httpx.AsyncClient(base_url=security_stack.url("api_gateway"), timeout=10) as client:
        response = await client.get("/metrics")
    assert response.status_code == 200
