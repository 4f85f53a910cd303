"""Every service serves Swagger UI and ReDoc from its own assets, and hides them in production."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from shared.http import create_service_app
from shared.settings import DEMO_DEFAULTS, Settings


def _client(settings: Settings, **kwargs: str) -> httpx.AsyncClient:
    app = create_service_app(service="test", title="Docs test", settings=settings, **kwargs)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def test_docs_pages_reference_only_local_assets() -> None:
    async with _client(Settings(_env_file=None, environment="development")) as client:
        for page in ("/docs", "/redoc"):
            response = await client.get(page)
            assert response.status_code == 200, page
            urls = re.findall(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""", response.text)
            assert urls, page
            assert all(u.startswith("/") for u in urls), (page, urls)
            assert "https://" not in response.text and "http://" not in response.text
            for url in urls:
                asset = await client.get(url)
                assert asset.status_code == 200, url
        assert (await client.get("/openapi.json")).json()["info"]["title"] == "Docs test"


async def test_docs_follow_a_custom_prefix() -> None:
    settings = Settings(_env_file=None)
    paths = {"docs_url": "/api/docs", "redoc_url": "/api/redoc", "openapi_url": "/api/openapi.json"}
    async with _client(settings, **paths) as client:
        page = (await client.get("/api/docs")).text
        assert "/api/docs/assets/swagger-ui-bundle.js" in page and "/api/openapi.json" in page
        assert (await client.get("/api/docs/assets/swagger-ui-bundle.js")).status_code == 200
        assert (await client.get("/api/redoc")).status_code == 200


PRODUCTION_SECRETS: dict[str, Any] = {
    "internal_api_key": "x" * 40,
    "unsubscribe_secret": "u" * 40,
    "rabbitmq_url": "amqp://notifications:a-real-password@127.0.0.1:5672/",
    **dict.fromkeys(DEMO_DEFAULTS),
}


@pytest.mark.parametrize(
    ("environment", "expose", "served"),
    [
        ("development", None, True),
        ("test", None, True),
        ("production", None, False),
        ("production", True, True),
        ("development", False, False),
    ],
)
async def test_docs_are_off_in_production_unless_exposed(
    environment: str, expose: bool | None, served: bool
) -> None:
    settings = Settings(
        _env_file=None,
        environment=environment,
        expose_docs=expose,
        # A production configuration the settings accept: real secrets, no demo values.
        **(PRODUCTION_SECRETS if environment == "production" else {}),
    )
    async with _client(settings) as client:
        for path in ("/docs", "/redoc", "/openapi.json"):
            status = (await client.get(path)).status_code
            assert status == (200 if served else 404), (path, status)


def test_blank_expose_docs_means_decide_by_environment() -> None:
    assert Settings(_env_file=None, expose_docs="").expose_docs is None  # type: ignore[arg-type]
