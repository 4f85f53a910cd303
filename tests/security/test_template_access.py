"""Preview and render were open to every user and unlimited: previews are for editors
(admins) now, and renders of a user's input count against a per-user budget."""

from __future__ import annotations

import httpx

from tests.security.conftest import SecurityStack

RENDER_LIMIT = 30  # TEMPLATE_RENDER_RATE_LIMIT_PER_MINUTE's default


async def test_a_user_cannot_preview_and_an_admin_can(security_stack: SecurityStack) -> None:
    _, email, password = await security_stack.register()
    draft = {"channel": "push", "title": "Hi {{ n }}", "body": "b", "variables": {"n": "A"}}
    async with httpx.AsyncClient(
        base_url=security_stack.url("template_service"), timeout=10
    ) as client:
        user = await security_stack.user_headers(email, password)
        refused = await client.post("/api/v1/templates/preview", json=draft, headers=user)
        admin = await security_stack.admin_headers()
        allowed = await client.post("/api/v1/templates/preview", json=draft, headers=admin)
    assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
    assert allowed.status_code == 200
    assert allowed.json()["data"]["rendered"]["title"] == "Hi A"


async def test_renders_are_limited_per_user(security_stack: SecurityStack) -> None:
    _, email, password = await security_stack.register()
    body = {"channel": "email", "variables": {"name": "A", "link": "https://example.com"}}
    async with httpx.AsyncClient(
        base_url=security_stack.url("template_service"), timeout=10
    ) as client:
        headers = await security_stack.user_headers(email, password)
        for _ in range(RENDER_LIMIT):
            ok = await client.post("/api/v1/templates/welcome/render", json=body, headers=headers)
            assert ok.status_code == 200, ok.text
        limited = await client.post("/api/v1/templates/welcome/render", json=body, headers=headers)
        # Another user's budget is their own.
        _, other_email, other_password = await security_stack.register()
        other = await security_stack.user_headers(other_email, other_password)
        unaffected = await client.post("/api/v1/templates/welcome/render", json=body, headers=other)
    assert limited.status_code == 429
    assert limited.json()["error"] == "rate_limited"
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert unaffected.status_code == 200
