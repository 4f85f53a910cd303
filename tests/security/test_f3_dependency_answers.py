"""F3: a locale that the user service accepted and the template service refused (`abcde`) made
the template lookup answer 422, which the gateway counted as an outage: two such sends opened
the breaker, and every other tenant's sends got 503 for 10 s.

Now one locale rule (`shared.locales`) serves the user, template and gateway services, so any
locale a user may hold resolves through the fallback chain; and a dependency's 4xx is an answer
about that request alone, which never counts against a breaker.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from services.api_gateway.breaker import BreakerState, CircuitBreaker
from services.api_gateway.clients import Dependency, TemplateLookup
from shared.settings import Settings
from shared.template_client import TemplateClient, TemplateRequestRefused
from tests.security.conftest import SecurityStack
from tests.servers import serve_in_thread

SENDS = 8  # past the gateway's breaker threshold (5) with room to spare


def _send(user_id: str) -> dict[str, Any]:
    return {
        "notification_type": "email",
        "user_id": user_id,
        "template_code": "welcome",
        "variables": {"name": "Ada", "link": "https://example.com/start"},
        "request_id": str(uuid.uuid4()),
    }


async def test_the_f3_sequence_leaves_everyone_elses_sends_accepted(
    security_stack: SecurityStack,
) -> None:
    tenant, _, _ = await security_stack.register(locale="abcde")
    key = security_stack.settings.demo_api_key.get_secret_value()
    async with httpx.AsyncClient(
        base_url=security_stack.url("api_gateway"), headers={"X-API-Key": key}, timeout=10
    ) as gateway:
        for _ in range(SENDS):
            response = await gateway.post("/v1/notifications/send", json=_send(tenant))
            # `abcde` has no template of its own: the fallback chain reaches the default.
            assert response.status_code == 202, response.text
        normal = await gateway.post(
            "/v1/notifications/send",
            json=_send(str(security_stack.seeded["user_service"]["demo_user_id"])),
        )
    assert normal.status_code == 202, normal.text


@pytest.fixture
def refusing_template_service(base_settings: Settings) -> Iterator[Settings]:
    """A template service that answers every lookup with a 422 in our envelope."""
    app = FastAPI()

    @app.get("/internal/v1/templates/{code}/active")
    async def refuse(code: str) -> JSONResponse:
        return JSONResponse(
            {"success": False, "error": "validation_error", "message": "locale refused"}, 422
        )

    with serve_in_thread(app, base_settings) as url:
        yield base_settings.model_copy(update={"template_service_url": url})


async def test_a_dependencys_4xx_is_an_answer_that_never_opens_the_breaker(
    refusing_template_service: Settings,
) -> None:
    breaker = CircuitBreaker("template_service_f3", failure_threshold=2, reset_seconds=60)
    async with TemplateClient(refusing_template_service) as client:
        lookup = TemplateLookup(
            client,
            Dependency("template_service_f3", breaker, retries=2, backoff_ms=1),
            ttl_seconds=30,
        )
        for _ in range(SENDS):
            with pytest.raises(TemplateRequestRefused) as refused:
                await lookup.active("welcome", "email", "en")
            assert refused.value.status_code == 422
    assert breaker.state is BreakerState.CLOSED
