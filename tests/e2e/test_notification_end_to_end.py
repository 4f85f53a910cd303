"""One notification through all five services, over real HTTP, AMQP, SMTP and FCM HTTP v1."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from devtools.stack import Stack
from shared.settings import Settings
from tests.conftest import wait_for


async def _send(settings: Settings, body: dict[str, Any], correlation_id: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=settings.api_gateway_url, timeout=10) as client:
        response = await client.post(
            "/v1/notifications/send",
            json=body,
            headers={
                "Authorization": f"Bearer {settings.demo_api_key.get_secret_value()}",
                "X-Correlation-ID": correlation_id,
            },
        )
    assert response.status_code == 202, response.text
    assert response.headers["x-correlation-id"] == correlation_id
    data: dict[str, Any] = response.json()["data"]
    return data


async def _status(settings: Settings, notification_id: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=settings.api_gateway_url, timeout=10) as client:
        response = await client.get(
            f"/v1/notifications/{notification_id}/status",
            headers={"X-API-Key": settings.demo_api_key.get_secret_value()},
        )
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


async def _delivered(settings: Settings, notification_id: str) -> dict[str, Any] | None:
    status = await _status(settings, notification_id)
    assert status["status"] not in ("failed", "skipped"), status
    return status if status["status"] == "delivered" else None


@pytest.mark.usefixtures("stack")
async def test_an_email_reaches_the_inbox_and_the_status_says_delivered(
    stack_settings_fixture: Settings, seeded: dict[str, Any], stack: Stack
) -> None:
    settings = stack_settings_fixture
    correlation_id = f"e2e-{uuid.uuid4().hex}"
    marker = uuid.uuid4().hex[:12]
    accepted = await _send(
        settings,
        {
            "notification_type": "email",
            "user_id": seeded["user_service"]["demo_user_id"],
            "template_code": "welcome",
            "variables": {"name": f"Ada {marker}", "link": "https://example.com/start"},
            "request_id": str(uuid.uuid4()),
            "priority": "high",
            "metadata": {"campaign": "e2e"},
        },
        correlation_id,
    )
    assert accepted["status"] == "queued"

    status = await wait_for(lambda: _delivered(settings, accepted["notification_id"]), timeout=30)
    assert status["template_code"] == "welcome" and status["template_version"] >= 1
    assert [h["status"] for h in status["history"]][-1] == "delivered"

    inbox = f"http://127.0.0.1:{settings.inbox_http_port}"
    async with httpx.AsyncClient(base_url=inbox, timeout=5) as client:
        listing = (await client.get("/api/v1/messages")).json()
        found = [m for m in listing["messages"] if marker in m["Subject"]]
        assert len(found) == 1, listing
        assert found[0]["Subject"] == f"Welcome, Ada {marker}!"
        message = (await client.get(f"/api/v1/message/{found[0]['ID']}")).json()
    assert "https://example.com/start" in message["Text"]
    assert f"Ada {marker}" in message["HTML"]

    # The correlation id travelled from the HTTP request through the message to the worker.
    email_log = (stack.log_dir / "email_service.log").read_text()
    assert correlation_id in email_log


@pytest.mark.usefixtures("stack")
async def test_a_push_reaches_the_fcm_stand_in(
    stack_settings_fixture: Settings, seeded: dict[str, Any]
) -> None:
    settings = stack_settings_fixture
    marker = uuid.uuid4().hex[:12]
    accepted = await _send(
        settings,
        {
            "notification_type": "push",
            "user_id": seeded["user_service"]["demo_user_id"],
            "template_code": "welcome",
            "variables": {"name": f"Ada {marker}", "link": "https://example.com/start"},
        },
        f"e2e-{uuid.uuid4().hex}",
    )
    await wait_for(lambda: _delivered(settings, accepted["notification_id"]), timeout=30)
    async with httpx.AsyncClient(base_url=settings.fcm_base_url, timeout=5) as client:
        received = (await client.get("/emulator/messages")).json()
    matching = [m for m in _messages(received) if marker in str(m)]
    assert len(matching) == 1, received


def _messages(received: Any) -> list[Any]:
    if isinstance(received, dict):
        data = received.get("data", received)
        if isinstance(data, dict):
            return list(data.get("messages", []))
        return list(data)
    return list(received)


async def _admin(settings: Settings, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """The operator API with the demo key (seeded with the `admin` scope)."""
    async with httpx.AsyncClient(base_url=settings.api_gateway_url, timeout=30) as client:
        return await client.request(
            method,
            f"/v1/admin/dead-letters{path}",
            headers={"Authorization": f"Bearer {settings.demo_api_key.get_secret_value()}"},
            **kwargs,
        )


async def _dead_lettered_email(settings: Settings, seeded: dict[str, Any]) -> str:
    """An email the SMTP server refuses for good (550): failed, and in failed.queue."""
    inbox = f"http://127.0.0.1:{settings.inbox_http_port}"
    async with httpx.AsyncClient(base_url=inbox, timeout=5) as client:
        await client.post("/api/control/faults", json={"mode": "permfail"})
        try:
            accepted = await _send(
                settings,
                {
                    "notification_type": "email",
                    "user_id": seeded["user_service"]["demo_user_id"],
                    "template_code": "welcome",
                    "variables": {"name": "Bounce", "link": "https://example.com/start"},
                },
                f"e2e-{uuid.uuid4().hex}",
            )
            notification_id: str = accepted["notification_id"]
            await wait_for(lambda: _is_status(settings, notification_id, "failed"), timeout=30)
        finally:
            await client.post("/api/control/faults", json={"mode": "none"})
    return notification_id


async def _is_status(settings: Settings, notification_id: str, wanted: str) -> bool:
    return (await _status(settings, notification_id))["status"] == wanted


@pytest.mark.usefixtures("stack")
async def test_the_operator_api_lists_inspects_replays_and_purges_dead_letters(
    stack_settings_fixture: Settings, seeded: dict[str, Any]
) -> None:
    settings = stack_settings_fixture
    first = await _dead_lettered_email(settings, seeded)

    listing = await _admin(settings, "GET", "/email", params={"limit": 10})
    assert listing.status_code == 200, listing.text
    (item,) = [i for i in listing.json()["data"] if i["notification_id"] == first]
    assert item["reason"] == "permanent_failure" and "550" in item["error"]
    assert item["attempt"] == 1 and item["failed_at"] and item["replays"] == 0
    assert listing.json()["meta"]["total"] >= 1

    one = await _admin(settings, "GET", f"/email/{item['message_id']}")
    assert one.status_code == 200 and one.json()["data"]["message"]["notification_id"] == first
    absent = await _admin(settings, "GET", "/email/no-such-message")
    assert absent.status_code == 404 and absent.json()["error"] == "dead_letter_not_found"
    assert (await _admin(settings, "GET", "/push")).json()["data"] == []

    replay = await _admin(settings, "POST", "/email/replay", json={"message_id": first})
    assert replay.status_code == 200, replay.text
    assert replay.json()["data"] == {"channel": "email", "replayed": [first], "skipped": []}
    await wait_for(lambda: _is_status(settings, first, "delivered"), timeout=30)

    second = await _dead_lettered_email(settings, seeded)
    refused = await _admin(settings, "DELETE", "/email")
    assert refused.status_code == 400 and refused.json()["error"] == "confirmation_required"
    purged = await _admin(settings, "DELETE", "/email", params={"confirm": "true"})
    assert purged.status_code == 200 and purged.json()["data"] == {"channel": "email", "purged": 1}
    assert (await _admin(settings, "GET", "/email")).json()["data"] == []
    assert (await _status(settings, second))["status"] == "failed"


# Series Prometheus makes itself rather than scraping them.
SYNTHETIC = {"up"}


def _names_used() -> dict[str, set[str]]:
    """Every metric name in the dashboard's expressions and in the alert rules."""
    import json
    import re
    from pathlib import Path

    import yaml

    deploy = Path(__file__).resolve().parents[2] / "deploy"
    dashboard = json.loads((deploy / "grafana" / "dashboards" / "notifications.json").read_text())
    rules = yaml.safe_load((deploy / "prometheus" / "alerts.yml").read_text())
    expressions = {
        f"dashboard: {p['title']}": t["expr"]
        for p in dashboard["panels"]
        for t in p.get("targets", [])
    }
    expressions |= {f"alert: {r['alert']}": r["expr"] for g in rules["groups"] for r in g["rules"]}
    metric = re.compile(r"\b(?:notifications|process|rabbitmq)_[a-z0-9_]+\b|\bup\b(?=\s*[{\[])")
    return {where: set(metric.findall(expr)) for where, expr in expressions.items()}


@pytest.mark.usefixtures("stack")
async def test_every_metric_in_the_dashboard_and_alerts_is_exported(
    stack_settings_fixture: Settings, seeded: dict[str, Any]
) -> None:
    """Scrape the running services after traffic (the tests above sent email and push, and
    dead-lettered and replayed) and look up each name the dashboard and the alerts use."""
    from prometheus_client.parser import text_string_to_metric_families

    settings = stack_settings_fixture
    exported: set[str] = set()
    async with httpx.AsyncClient(timeout=10) as client:
        for port in (
            settings.api_gateway_port,
            settings.user_service_port,
            settings.template_service_port,
            settings.email_service_port,
            settings.push_service_port,
        ):
            response = await client.get(f"http://127.0.0.1:{port}/metrics")
            assert response.status_code == 200
            for family in text_string_to_metric_families(response.text):
                exported |= {sample.name for sample in family.samples}
    used = _names_used()
    assert len(used) > 20
    missing = {
        where: sorted(names - exported - SYNTHETIC)
        for where, names in used.items()
        if names - exported - SYNTHETIC
    }
    assert not missing, f"not exported by any service: {missing}"
