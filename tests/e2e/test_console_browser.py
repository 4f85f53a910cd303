"""The console and every service's API docs, used as a person would: headless Chromium.

The browser is Debian's `chromium`, driven by Playwright through `executable_path` (Playwright's
own browser download is not needed). Every request that does not go to 127.0.0.1 or localhost
is aborted and recorded, and the tests assert that none was attempted: the pages must work on
a machine without internet access.

Screenshots of each page go to `$CONSOLE_SCREENSHOT_DIR` when set (that is how
`docs/console/` is refreshed), else to a temporary directory.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, Page, Route, async_playwright, expect

from shared.settings import Settings
from tests.conftest import wait_for

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
# The flags the browser probe of this machine used; Playwright adds --headless and a fresh
# --user-data-dir of its own.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.usefixtures("stack")


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = os.environ.get("CONSOLE_SCREENSHOT_DIR")
    path = Path(target) if target else tmp_path_factory.mktemp("console-screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


class Offline:
    """A browser context whose requests may only reach this machine."""

    def __init__(self, context: BrowserContext) -> None:
        self.context = context
        self.blocked: list[str] = []

    async def route(self, route: Route) -> None:
        host = urlparse(route.request.url).hostname
        if host in LOCAL_HOSTS or route.request.url.startswith(("data:", "about:", "blob:")):
            await route.continue_()
        else:
            self.blocked.append(route.request.url)
            await route.abort("internetdisconnected")


@pytest.fixture
async def offline(browser: Browser) -> AsyncIterator[Offline]:
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    guard = Offline(context)
    await context.route("**/*", guard.route)
    try:
        yield guard
    finally:
        await context.close()
    assert guard.blocked == [], f"the pages tried to leave the machine: {guard.blocked}"


async def _sign_in(page: Page, settings: Settings, target: str = "/console/") -> None:
    """Keyboard only: focus, type, Tab, type, Enter."""
    await page.goto(settings.api_gateway_url + target)
    await page.wait_for_url(lambda url: "/console/login" in url)
    await page.focus("#email")
    await page.keyboard.type(settings.demo_admin_email)
    await page.keyboard.press("Tab")
    await page.keyboard.type(settings.demo_admin_password.get_secret_value())
    await page.keyboard.press("Enter")
    await page.wait_for_url(lambda url: "/console/login" not in url)


async def _every_control_is_labelled(page: Page) -> None:
    unlabelled = await page.evaluate(
        """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea, button')]
            .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                          && !(el.tagName === 'BUTTON' && el.textContent.trim()))
            .map(el => el.outerHTML)"""
    )
    assert unlabelled == [], unlabelled


async def _reflows_at_200_percent(page: Page) -> None:
    """At 200 % zoom a 1280 px window is 640 CSS px wide: nothing may need sideways scrolling
    except the tables, which scroll inside their own box."""
    await page.set_viewport_size({"width": 640, "height": 900})
    overflow = await page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    await page.set_viewport_size({"width": 1280, "height": 900})
    assert overflow <= 0, f"the page is {overflow}px wider than the window at 200 %"


async def _send(settings: Settings, body: dict[str, Any]) -> str:
    async with httpx.AsyncClient(base_url=settings.api_gateway_url, timeout=10) as client:
        response = await client.post(
            "/v1/notifications/send",
            json=body,
            headers={"Authorization": f"Bearer {settings.demo_api_key.get_secret_value()}"},
        )
    assert response.status_code == 202, response.text
    notification_id: str = response.json()["data"]["notification_id"]
    return notification_id


async def _status(settings: Settings, notification_id: str) -> str:
    async with httpx.AsyncClient(base_url=settings.api_gateway_url, timeout=10) as client:
        response = await client.get(
            f"/v1/notifications/{notification_id}/status",
            headers={"X-API-Key": settings.demo_api_key.get_secret_value()},
        )
    status: str = response.json()["data"]["status"]
    return status


def _welcome(seeded: dict[str, Any], name: str, **extra: Any) -> dict[str, Any]:
    return {
        "notification_type": "email",
        "user_id": seeded["user_service"]["demo_user_id"],
        "template_code": "welcome",
        "variables": {"name": name, "link": "https://example.com/start"},
        **extra,
    }


async def test_sign_in_search_and_timeline(
    offline: Offline, stack_settings_fixture: Settings, seeded: dict[str, Any], shots: Path
) -> None:
    settings = stack_settings_fixture
    marker = uuid.uuid4().hex[:10]
    request_id = f"console-{marker}"
    notification_id = await _send(
        settings, _welcome(seeded, f"Ada {marker}", request_id=request_id)
    )
    await wait_for(lambda: _is(settings, notification_id, "delivered"), timeout=30)

    page = await offline.context.new_page()
    await page.goto(settings.api_gateway_url + "/console/login")
    await _every_control_is_labelled(page)
    await page.screenshot(path=shots / "login.png")
    await _sign_in(page, settings, "/console/notifications")

    await page.get_by_label("Request id").fill(request_id)
    await page.get_by_label("Channel").select_option("email")
    await page.get_by_role("button", name="Search").click()
    row = page.get_by_role("row").filter(has_text=notification_id)
    await expect(row).to_have_count(1)
    await expect(row).to_contain_text("delivered")
    await _every_control_is_labelled(page)
    await _reflows_at_200_percent(page)
    await page.screenshot(path=shots / "notifications.png", full_page=True)

    await row.get_by_role("link", name=notification_id).click()
    timeline = page.get_by_role("list", name="Timeline")
    await expect(timeline.get_by_role("listitem")).to_have_count(3)
    await expect(timeline).to_contain_text("queued")
    await expect(timeline).to_contain_text("attempt 1")
    await expect(timeline.get_by_role("listitem").last).to_contain_text("delivered")
    await expect(page.locator("dl.content")).to_contain_text(f"Welcome, Ada {marker}!")
    html_body = page.frame_locator("iframe.email")
    await expect(html_body.locator("body")).to_contain_text(f"Hi Ada {marker}")
    # Chromium paints a sandboxed frame only once it has been on screen.
    await page.locator("iframe.email").scroll_into_view_if_needed()
    await page.screenshot(path=shots / "notification.png", full_page=True)
    await _reflows_at_200_percent(page)


async def _is(settings: Settings, notification_id: str, wanted: str) -> bool:
    status = await _status(settings, notification_id)
    return status == wanted


async def test_overview_draws_live_charts(
    offline: Offline, stack_settings_fixture: Settings, seeded: dict[str, Any], shots: Path
) -> None:
    settings = stack_settings_fixture
    page = await offline.context.new_page()
    await _sign_in(page, settings, "/console/overview")
    panels = page.locator("#panels")
    await expect(panels.locator("figure")).to_have_count(4)

    # The module swaps the charts in every 2 s: wait for two refreshes.
    # (Polled from here: the page's CSP rightly forbids the eval that wait_for_function uses.)
    async def updated() -> int:
        value = await page.evaluate("() => document.getElementById('panels').dataset.updated")
        return int(value or 0)

    # A few rounds of traffic, one per refresh, so the lines have something to show.
    last = await wait_for(updated, timeout=10)
    for round_ in range(4):
        for i in range(round_ + 2):
            channel = "push" if i % 2 else "email"
            await _send(settings, _welcome(seeded, f"Overview {i}", notification_type=channel))
        last = await wait_for(lambda seen=last: _later(updated, seen), timeout=10)
    await expect(panels.locator("polyline")).to_have_count(4)
    await expect(page.get_by_role("button", name="Pause live updates")).to_be_visible()
    await _every_control_is_labelled(page)
    await _reflows_at_200_percent(page)
    await page.screenshot(path=shots / "overview.png", full_page=True)


async def _later(read: Any, than: int) -> int | None:
    value: int = await read()
    return value if value > than else None


async def test_a_dead_letter_replayed_from_the_console_is_delivered(
    offline: Offline, stack_settings_fixture: Settings, seeded: dict[str, Any], shots: Path
) -> None:
    settings = stack_settings_fixture
    inbox = f"http://127.0.0.1:{settings.inbox_http_port}"
    async with httpx.AsyncClient(base_url=inbox, timeout=5) as client:
        await client.post("/api/control/faults", json={"mode": "permfail"})
        try:
            notification_id = await _send(settings, _welcome(seeded, "Dead Letter"))
            await wait_for(lambda: _is(settings, notification_id, "failed"), timeout=30)
        finally:
            await client.post("/api/control/faults", json={"mode": "none"})

    page = await offline.context.new_page()
    await _sign_in(page, settings, "/console/dead-letters?channel=email")
    row = page.get_by_role("row").filter(has_text=notification_id)
    await expect(row).to_contain_text("permanent_failure")
    await _every_control_is_labelled(page)
    await page.screenshot(path=shots / "dead-letters.png", full_page=True)

    await row.get_by_role("link", name=notification_id).click()
    await expect(page.get_by_role("heading", level=1)).to_contain_text("Dead letter")
    await page.screenshot(path=shots / "dead-letter.png", full_page=True)
    await page.get_by_role("button", name="Replay this message").click()
    await expect(page.get_by_role("status")).to_contain_text("Replayed 1")

    await wait_for(lambda: _is(settings, notification_id, "delivered"), timeout=30)
    await page.goto(f"{settings.api_gateway_url}/console/notifications/{notification_id}")
    timeline = page.get_by_role("list", name="Timeline")
    await expect(timeline).to_contain_text("replay 1")
    await expect(timeline.get_by_role("listitem").last).to_contain_text("delivered")


async def test_template_versions_diff_preview_and_rollback(
    offline: Offline, stack_settings_fixture: Settings, shots: Path
) -> None:
    settings = stack_settings_fixture
    # A template of this test's own (the seeded `welcome` stays as other tests expect it), with
    # a second version, saved through the template service's API as an admin would.
    code = f"console-{uuid.uuid4().hex[:8]}"
    first = {
        "channel": "email",
        "locale": "en",
        "subject": "Welcome, {{ name }}!",
        "text_body": "Hi {{ name }},\n\nWelcome aboard: {{ link }}\n",
    }
    token = await _admin_token(settings)
    admin = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=settings.template_service_url, timeout=10) as client:
        created = await client.post(
            "/api/v1/templates", json={"code": code, "name": "Console test", **first}, headers=admin
        )
        assert created.status_code == 201, created.text
        saved = await client.put(
            f"/api/v1/templates/{code}",
            json={
                **first,
                "subject": "Welcome aboard, {{ name }}!",
                "text_body": "Hi {{ name }},\n\nStart here: {{ link }}\n",
            },
            headers=admin,
        )
    assert saved.status_code == 200, saved.text
    new_version = saved.json()["data"]["version"]

    page = await offline.context.new_page()
    await _sign_in(page, settings, "/console/templates")
    await page.screenshot(path=shots / "templates.png", full_page=True)
    await page.get_by_label("Code starts with").fill(code)
    await page.get_by_role("button", name="Filter").click()
    await page.get_by_role("link", name=code).click()
    await page.get_by_label("From version").select_option(str(new_version - 1))
    await page.get_by_label("To version").select_option(str(new_version))
    await page.get_by_role("button", name="Show differences").click()
    diff = page.get_by_role("region", name="Differences")
    await expect(diff).to_contain_text("Welcome aboard, {{ name }}!")
    await expect(diff.locator(".d-removed").first).to_contain_text("Welcome, {{ name }}!")

    await page.get_by_label("Version", exact=True).select_option(str(new_version))
    await page.get_by_label("Variables (JSON object)").fill(
        json.dumps({"name": "Grace", "link": "https://example.com/go"})
    )
    await page.get_by_role("button", name="Preview").click()
    preview = page.get_by_role("region", name=f"Preview of v{new_version}")
    await expect(preview).to_contain_text("Welcome aboard, Grace!")
    await _every_control_is_labelled(page)
    await page.screenshot(path=shots / "template.png", full_page=True)

    # Roll back: the earlier version becomes active again.
    await page.get_by_role("button", name=f"Activate v{new_version - 1}").click()
    await expect(page.get_by_role("status")).to_contain_text(f"Version {new_version - 1} is now")
    versions = page.get_by_role("table", name="Versions")
    active_row = versions.get_by_role("row").filter(has_text="active")
    await expect(active_row.first).to_contain_text(str(new_version - 1))


async def _admin_token(settings: Settings) -> str:
    async with httpx.AsyncClient(base_url=settings.user_service_url, timeout=10) as client:
        response = await client.post(
            "/api/v1/auth/login",
            json={
                "email": settings.demo_admin_email,
                "password": settings.demo_admin_password.get_secret_value(),
            },
        )
    assert response.status_code == 200, response.text
    token: str = response.json()["data"]["access_token"]
    return token


DOCS = {
    "api-gateway": ("api_gateway_port", "/docs"),
    "user-service": ("user_service_port", "/api/docs"),
    "template-service": ("template_service_port", "/api/docs"),
    "email-service": ("email_service_port", "/docs"),
    "push-service": ("push_service_port", "/docs"),
}


@pytest.mark.parametrize("service", list(DOCS))
async def test_swagger_ui_renders_every_operation_offline(
    offline: Offline, stack_settings_fixture: Settings, service: str, shots: Path
) -> None:
    port_field, path = DOCS[service]
    base = f"http://127.0.0.1:{getattr(stack_settings_fixture, port_field)}"
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        spec = (await client.get(path.replace("docs", "openapi.json"))).json()
    operations = sum(1 for item in spec["paths"].values() for method in item if method in _METHODS)
    page = await offline.context.new_page()
    await page.goto(base + path)
    await expect(page.locator(".opblock")).to_have_count(operations, timeout=20_000)
    await expect(page.locator(".information-container .title")).to_contain_text(
        spec["info"]["title"]
    )
    await page.screenshot(path=shots / f"swagger-{service}.png")

    await page.goto(base + path.replace("docs", "redoc"))
    await expect(page.locator("h1").first).to_contain_text(spec["info"]["title"], timeout=20_000)


_METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}
