"""The demo seed is idempotent and produces renderable `welcome` templates and a marketing
`newsletter`."""

from __future__ import annotations

import httpx

from services.template_service.seed import seed_demo
from shared.settings import Settings


async def test_seed_twice_changes_nothing(
    base_settings: Settings, ts_client: httpx.AsyncClient, internal: dict[str, str]
) -> None:
    await seed_demo(base_settings)
    second = await seed_demo(base_settings)
    assert second == {
        "templates": [
            {"code": "welcome", "channel": "email", "created": False},
            {"code": "welcome", "channel": "push", "created": False},
            {"code": "newsletter", "channel": "email", "created": False},
        ]
    }
    for channel in ("email", "push"):
        versions = await ts_client.get(
            "/api/v1/templates/welcome/versions", params={"channel": channel}, headers=internal
        )
        assert versions.json()["meta"]["total"] == 1
        rendered = await ts_client.post(
            "/api/v1/templates/welcome/render",
            json={"channel": channel, "variables": {"name": "Ana", "link": "https://x"}},
            headers=internal,
        )
        assert rendered.status_code == 200, rendered.text
    push = rendered.json()["data"]["rendered"]
    assert (push["title"], push["data"]) == ("Welcome, Ana!", {"link": "https://x"})
    newsletter = await ts_client.get(
        "/internal/v1/templates/newsletter/active", params={"channel": "email"}, headers=internal
    )
    assert newsletter.json()["data"]["category"] == "marketing"
