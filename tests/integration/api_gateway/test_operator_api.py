"""The operator API's door: who may call `/v1/admin/...`, and the errors it answers with.

The dead-letter operations themselves run against real workers in `tests/e2e/`.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator, Callable

import pytest

from devtools.stack import free_port
from services.api_gateway.api_keys import store_key
from services.api_gateway.settings import GatewaySettings
from tests.identity import create_account, mint_token
from tests.integration.api_gateway.conftest import Running, running_gateway, send_body
from tests.integration.api_gateway.upstream import Upstream


@pytest.fixture
async def ops(
    gw_settings: Callable[..., GatewaySettings], upstream: Upstream
) -> AsyncIterator[Running]:
    """A gateway whose workers are not running (nothing listens on their ports)."""
    upstream.add_template("welcome", "email")
    nobody = f"http://127.0.0.1:{free_port()}"
    settings = gw_settings(email_service_url=nobody, push_service_url=nobody)
    async with running_gateway(settings) as running:
        yield running


async def _key(ops: Running, *scopes: str) -> dict[str, str]:
    raw = "test-" + secrets.token_urlsafe(24)
    await store_key(ops.gateway.pool, raw, name="ops", scopes=scopes)
    return {"Authorization": f"Bearer {raw}"}


async def _token(ops: Running, role: str) -> dict[str, str]:
    settings = ops.gateway.settings
    user_id = await create_account(settings, role=role)  # type: ignore[arg-type]
    return {"Authorization": f"Bearer {mint_token(settings, user_id, role)}"}  # type: ignore[arg-type]


async def test_without_credentials_the_operator_api_is_401(ops: Running) -> None:
    response = await ops.client.get("/v1/admin/dead-letters/email")
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    bad = await ops.client.get(
        "/v1/admin/dead-letters/email", headers={"Authorization": "Bearer not-a-key"}
    )
    assert bad.status_code == 401 and bad.json()["error"] == "invalid_api_key"


async def test_a_send_only_key_or_a_user_token_is_403(ops: Running) -> None:
    send_only = await ops.client.get("/v1/admin/dead-letters/email", headers=ops.headers)
    assert send_only.status_code == 403 and send_only.json()["error"] == "forbidden"
    user = await ops.client.get("/v1/admin/dead-letters/email", headers=await _token(ops, "user"))
    assert user.status_code == 403 and user.json()["error"] == "forbidden"
    forged = await ops.client.get(
        "/v1/admin/dead-letters/email", headers={"Authorization": "Bearer a.b.c"}
    )
    assert forged.status_code == 401 and forged.json()["error"] == "invalid_token"


async def test_an_admin_key_or_admin_token_reaches_the_worker(ops: Running) -> None:
    for headers in (await _key(ops, "send", "admin"), await _token(ops, "admin")):
        response = await ops.client.get("/v1/admin/dead-letters/push", headers=headers)
        # Authorised: the (absent) worker is the only thing missing.
        assert response.status_code == 503, response.text
        assert response.json()["error"] == "dependency_unavailable"
        assert response.headers["Retry-After"] == "5"


async def test_purge_needs_confirm_and_channels_are_checked(ops: Running) -> None:
    admin = await _key(ops, "admin")
    unconfirmed = await ops.client.delete("/v1/admin/dead-letters/email", headers=admin)
    assert unconfirmed.status_code == 400
    assert unconfirmed.json()["error"] == "confirmation_required"
    unknown = await ops.client.get("/v1/admin/dead-letters/sms", headers=admin)
    assert unknown.status_code == 422 and unknown.json()["error"] == "validation_error"
    extra = await ops.client.post(
        "/v1/admin/dead-letters/email/replay", json={"message_id": "x", "all": True}, headers=admin
    )
    assert extra.status_code == 422


async def test_the_console_cookie_needs_a_csrf_token_for_changes(ops: Running) -> None:
    token = (await _token(ops, "admin"))["Authorization"].removeprefix("Bearer ")
    ops.client.cookies.set("console_session", token)
    try:
        read = await ops.client.get("/v1/admin/dead-letters/email")
        assert read.status_code == 503  # authorised by the cookie
        change = await ops.client.post("/v1/admin/dead-letters/email/replay")
        assert change.status_code == 403 and change.json()["error"] == "csrf_failed"
    finally:
        ops.client.cookies.clear()


async def test_accepted_notifications_keep_their_variables(
    ops: Running, upstream: Upstream
) -> None:
    response = await ops.client.post(
        "/v1/notifications/send", json=send_body(upstream.add_user()), headers=ops.headers
    )
    assert response.status_code == 202, response.text
    stored = await ops.gateway.pool.fetchval(
        "SELECT convert_from(payload, 'UTF8')::jsonb -> 'variables'"
        " FROM api_gateway.notification_statuses WHERE id = $1",
        uuid.UUID(response.json()["data"]["notification_id"]),
    )
    assert stored == {"name": "Ada", "link": "https://example.com/start"}
