"""`shared.template_client.TemplateClient` against the real app served by uvicorn."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
import uvicorn
from pydantic import SecretStr

from devtools.stack import free_port
from services.template_service.app import create_app
from shared.rendering import MissingVariables
from shared.settings import Settings
from shared.template_client import TemplateClient, TemplateNotFound, TemplateServiceUnavailable
from tests.conftest import wait_for
from tests.integration.template_service.conftest import email_body, push_body

Headers = dict[str, str]


@pytest.fixture(scope="module")
async def live_settings(base_settings: Settings) -> AsyncIterator[Settings]:
    """The service on a free port, served by uvicorn in this event loop."""
    port = free_port()
    settings = base_settings.model_copy(update={"template_service_url": f"http://127.0.0.1:{port}"})
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_config=None, access_log=False
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())

    async def started() -> bool:
        return server.started

    await wait_for(started, timeout=10)
    try:
        yield settings
    finally:
        server.should_exit = True
        await task


async def test_pinned_versions_are_fetched_once_and_shared_by_concurrent_misses(
    live_settings: Settings, ts_client: httpx.AsyncClient, admin: Headers, code: str
) -> None:
    await ts_client.post("/api/v1/templates", json=email_body(code), headers=admin)
    async with TemplateClient(live_settings) as client:
        versions = await asyncio.gather(
            *(client.get_version(code, "email", "en", 1) for _ in range(20))
        )
        assert client.fetches == 1
        assert {v.version for v in versions} == {1}
        again = await client.get_version(code, "email", "en", 1)
        assert client.fetches == 1
        assert again is versions[0]
        assert again.variables == ["link", "name"]
        rendered = again.render({"name": "<Ana>", "link": "https://x"})
        assert rendered["subject"] == "Welcome, <Ana>!"
        assert rendered["html_body"].startswith("<p>Hi &lt;Ana&gt;")
        with pytest.raises(MissingVariables) as missing:
            again.render({})
        assert missing.value.names == ["link", "name"]


async def test_active_is_cached_for_the_ttl_and_primes_the_version_cache(
    live_settings: Settings, ts_client: httpx.AsyncClient, admin: Headers, code: str
) -> None:
    await ts_client.post("/api/v1/templates", json=push_body(code), headers=admin)
    async with TemplateClient(live_settings, active_ttl_seconds=3600) as client:
        active = await client.get_active(code, "push", "pt-BR")
        assert (active.locale, active.version, active.data) == ("en", 1, {"link": "{{ link }}"})
        assert active.fields().fields["data.link"] == "{{ link }}"
        assert active.render({"name": "A", "link": "L"})["data"] == {"link": "L"}

        await ts_client.put(
            f"/api/v1/templates/{code}",
            json={"channel": "push", "title": "v2", "body": "b"},
            headers=admin,
        )
        assert (await client.get_active(code, "push", "pt-BR")).version == 1  # still cached
        await client.get_version(code, "push", "en", 1)
        assert client.fetches == 1
        client.forget_active()
        assert (await client.get_active(code, "push", "pt-BR")).version == 2


async def test_expired_active_entries_are_fetched_again(
    live_settings: Settings, ts_client: httpx.AsyncClient, admin: Headers, code: str
) -> None:
    await ts_client.post("/api/v1/templates", json=email_body(code), headers=admin)
    async with TemplateClient(live_settings, active_ttl_seconds=0) as client:
        await client.get_active(code, "email", None)
        await client.get_active(code, "email", None)
        assert client.fetches == 2


async def test_not_found_and_deleted_templates(
    live_settings: Settings, ts_client: httpx.AsyncClient, admin: Headers, code: str
) -> None:
    async with TemplateClient(live_settings) as client:
        with pytest.raises(TemplateNotFound):
            await client.get_active(code, "email", "en")
        await ts_client.post("/api/v1/templates", json=email_body(code), headers=admin)
        await ts_client.delete(f"/api/v1/templates/{code}", headers=admin)
        with pytest.raises(TemplateNotFound):
            await client.get_active(code, "email", "en")
        pinned = await client.get_version(code, "email", "en", 1)
        assert pinned.code == code
        with pytest.raises(TemplateNotFound) as missing:
            await client.get_version(code, "email", "en", 7)
        assert missing.value.status_code == 404


async def test_unreachable_service_and_wrong_key_are_unavailable(
    live_settings: Settings,
) -> None:
    closed = live_settings.model_copy(
        update={"template_service_url": f"http://127.0.0.1:{free_port()}"}
    )
    async with TemplateClient(closed) as client:
        with pytest.raises(TemplateServiceUnavailable) as down:
            await client.get_version("welcome", "email", "en", 1)
        assert down.value.status_code == 503
    wrong_key = live_settings.model_copy(update={"internal_api_key": SecretStr("nope")})
    async with TemplateClient(wrong_key) as client:
        with pytest.raises(TemplateServiceUnavailable):
            await client.get_active("welcome", "email", "en")


async def test_codes_that_are_not_slugs_never_reach_the_network(live_settings: Settings) -> None:
    async with TemplateClient(live_settings) as client:
        for code in ("../users", "a/b", "welcome?x=1", "A"):
            with pytest.raises(TemplateNotFound):
                await client.get_active(code, "email", "en")
        assert client.fetches == 0
