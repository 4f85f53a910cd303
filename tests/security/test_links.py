"""A `javascript:` link placed in a template's `href` was delivered in emails. A variable that
starts a link must be an http, https or mailto URL: the template service, the gateway and both
workers refuse anything else with `unsafe_link` naming the variable."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from shared.rendering import UnsafeLink
from shared.template_client import TemplateVersion
from tests.security.conftest import SecurityStack

HOSTILE = ("javascript:alert(document.cookie)", " JavaScript:alert(1)", "data:text/html,<b>x")


@pytest.mark.parametrize("link", HOSTILE)
async def test_the_gateway_refuses_a_send_whose_link_is_not_http(
    security_stack: SecurityStack, link: str
) -> None:
    settings = security_stack.settings
    async with httpx.AsyncClient(base_url=security_stack.url("api_gateway"), timeout=10) as client:
        response = await client.post(
            "/v1/notifications/send",
            json={
                "notification_type": "email",
                "user_id": security_stack.seeded["user_service"]["demo_user_id"],
                "template_code": "welcome",
                "variables": {"name": "Ada", "link": link},
                "request_id": str(uuid.uuid4()),
            },
            headers={"X-API-Key": settings.demo_api_key.get_secret_value()},
        )
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["error"] == "unsafe_link"
    assert "link" in error["message"] or any(
        d["field"] == "variables.link" for d in error.get("details") or []
    )


async def test_a_preview_refuses_it_and_names_the_variable(security_stack: SecurityStack) -> None:
    draft = {
        "channel": "email",
        "subject": "s",
        "text_body": "t",
        "html_body": '<a href="{{ next.url }}">go</a>',
        "variables": {"next": {"url": HOSTILE[0]}},
    }
    async with httpx.AsyncClient(
        base_url=security_stack.url("template_service"), timeout=10
    ) as client:
        response = await client.post(
            "/api/v1/templates/preview", json=draft, headers=await security_stack.admin_headers()
        )
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "unsafe_link"
    assert response.json()["details"] == [
        {"field": "variables.next.url", "message": "must be an http, https or mailto URL"}
    ]


async def test_a_saved_version_lists_its_link_variables(security_stack: SecurityStack) -> None:
    settings = security_stack.settings
    async with httpx.AsyncClient(
        base_url=security_stack.url("template_service"), timeout=10
    ) as client:
        response = await client.get(
            "/internal/v1/templates/welcome/active",
            params={"channel": "email"},
            headers={"X-Internal-API-Key": settings.internal_api_key.get_secret_value()},
        )
    assert response.status_code == 200
    version: dict[str, Any] = response.json()["data"]
    assert version["variables"] == ["link", "name"]
    assert version["link_variables"] == ["link"]


def test_the_workers_renderer_refuses_it_too() -> None:
    """Both workers render a pinned version through `TemplateVersion` (email) or its fields
    (push): a message that slipped past the gateway fails for good instead of delivering."""
    version = TemplateVersion(
        code="welcome",
        channel="email",
        locale="en",
        version=1,
        name="Welcome",
        subject="Hi",
        text_body="{{ link }}",
        html_body='<a href="{{ link }}">start</a>',
        variables=["link"],
    )
    with pytest.raises(UnsafeLink) as refused:
        version.render({"link": HOSTILE[0]})
    assert refused.value.names == ["link"]
    push = TemplateVersion(
        code="p",
        channel="push",
        locale="en",
        version=1,
        name="P",
        title="t",
        body="b",
        image_url="{{ pic }}",
        variables=["pic"],
    )
    with pytest.raises(UnsafeLink):
        push.render({"pic": "javascript:x"})
    assert push.render({"pic": "https://cdn.example.com/a.png"})["image_url"] == (
        "https://cdn.example.com/a.png"
    )
