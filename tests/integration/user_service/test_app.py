"""Health, Swagger UI, metrics, and the demo seed."""

from __future__ import annotations

import httpx

from services.user_service.seed import DEMO_DEVICE_TOKEN, seed_demo
from services.user_service.settings import UserServiceSettings
from tests.integration.user_service.conftest import API, INTERNAL, running


async def test_health_checks_db_and_redis(client: httpx.AsyncClient) -> None:
    response = await client.get(f"{API}/health")
    assert response.status_code == 200
    data = response.json()["data"]
    assert data == {
        "service": "user_service",
        "status": "ok",
        "checks": {"db": "up", "redis": "up"},
    }


async def test_swagger_ui_and_openapi_are_served(client: httpx.AsyncClient) -> None:
    docs = await client.get("/api/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    spec = (await client.get("/api/openapi.json")).json()
    assert "/internal/v1/users/{user_id}/contact" in spec["paths"]
    assert "/api/v1/users/{user_id}/preferences" in spec["paths"]
    assert set(spec["components"]["securitySchemes"]) == {"bearerAuth", "internalApiKey"}
    assert spec["paths"]["/api/v1/users/me"]["get"]["security"] == [{"bearerAuth": []}]
    assert "security" not in spec["paths"]["/api/v1/auth/login"]["post"]


async def test_metrics_count_contact_cache_outcomes(client: httpx.AsyncClient) -> None:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert "notifications_http_requests_total" in response.text


async def test_unknown_route_is_the_envelope(client: httpx.AsyncClient) -> None:
    response = await client.get(f"{API}/nothing-here")
    assert response.status_code == 404 and response.json()["error"] == "not_found"


async def test_seed_demo_is_idempotent_and_usable(us_settings: UserServiceSettings) -> None:
    base_settings = us_settings  # the demo's accounts, hashed with the cheap test profile
    first = await seed_demo(base_settings)
    second = await seed_demo(base_settings)
    assert first == second
    assert set(first) == {"admin_id", "demo_user_id"}

    async with running(base_settings) as (_, client):
        admin_login = await client.post(
            f"{API}/auth/login",
            json={
                "email": base_settings.demo_admin_email,
                "password": base_settings.demo_admin_password.get_secret_value(),
            },
        )
        assert admin_login.status_code == 200
        token = admin_login.json()["data"]["access_token"]
        listed = await client.get(
            f"{API}/users",
            headers={"Authorization": f"Bearer {token}"},
            params={"email": base_settings.demo_user_email},
        )
        assert listed.status_code == 200 and listed.json()["meta"]["total"] == 1
        admin = await client.get(f"{API}/users/me", headers={"Authorization": f"Bearer {token}"})
        assert admin.json()["data"]["role"] == "admin"
        contact = await client.get(
            f"{INTERNAL}/users/{first['demo_user_id']}/contact",
            headers={"X-Internal-API-Key": base_settings.internal_api_key.get_secret_value()},
        )
    assert contact.json()["data"] | {"user_id": None} == {
        "user_id": None,
        "name": "Demo User",
        "email": base_settings.demo_user_email,
        "locale": "en",
        "timezone": "UTC",
        "preferences": {"email": True, "push": True, "quiet_hours": None, "categories": {}},
        "devices": [{"token": DEMO_DEVICE_TOKEN, "platform": "android"}],
    }
