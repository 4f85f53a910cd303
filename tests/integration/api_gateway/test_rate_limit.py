"""Rate limits per API key and per user, their headers, and failing open without Redis."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from prometheus_client import REGISTRY

from devtools.stack import free_port
from services.api_gateway.settings import GatewaySettings
from tests.integration.api_gateway.conftest import Running, send_body
from tests.integration.api_gateway.upstream import Upstream

SEND = "/v1/notifications/send"
StartGateway = Callable[[GatewaySettings], AbstractAsyncContextManager[Running]]


def _headers_ok(response_headers: object) -> None:
    for name in ("ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"):
        assert name in response_headers, name  # type: ignore[operator]


async def test_a_key_over_its_own_limit_gets_429_with_headers(
    gw: Running, upstream: Upstream
) -> None:
    headers = await gw.new_key(rate_limit=2)
    user_ids = [upstream.add_user() for _ in range(3)]
    first = await gw.client.post(SEND, json=send_body(user_ids[0]), headers=headers)
    second = await gw.client.post(SEND, json=send_body(user_ids[1]), headers=headers)
    third = await gw.client.post(SEND, json=send_body(user_ids[2]), headers=headers)
    assert [first.status_code, second.status_code, third.status_code] == [202, 202, 429]
    for response in (first, second, third):
        _headers_ok(response.headers)
        assert response.headers["ratelimit-limit"] == "2"
    assert first.headers["ratelimit-remaining"] == "1"
    assert third.headers["ratelimit-remaining"] == "0"
    assert third.json()["error"] == "rate_limited"
    assert 1 <= int(third.headers["retry-after"]) <= 30
    # A refused request consumes nothing: another key is unaffected.
    other = await gw.client.post(SEND, json=send_body(user_ids[2]), headers=gw.headers)
    assert other.status_code == 202


async def test_errors_after_the_rate_limit_carry_the_headers(
    gw: Running, upstream: Upstream
) -> None:
    response = await gw.client.post(SEND, json=send_body(uuid.uuid4()), headers=gw.headers)
    assert response.status_code == 404
    _headers_ok(response.headers)


async def test_the_limit_is_also_per_user(
    gw_settings: Callable[..., GatewaySettings], start_gateway: StartGateway, upstream: Upstream
) -> None:
    upstream.add_template("welcome")
    async with start_gateway(gw_settings(gateway_rate_limit_per_user=2)) as gw:
        busy, calm = upstream.add_user(), upstream.add_user()
        codes = [
            (await gw.client.post(SEND, json=send_body(busy), headers=gw.headers)).status_code
            for _ in range(3)
        ]
        assert codes == [202, 202, 429]
        calm_response = await gw.client.post(SEND, json=send_body(calm), headers=gw.headers)
        assert calm_response.status_code == 202


async def test_redis_down_fails_open_and_idempotency_still_works(
    gw_settings: Callable[..., GatewaySettings], start_gateway: StartGateway, upstream: Upstream
) -> None:
    upstream.add_template("welcome")
    closed = f"redis://127.0.0.1:{free_port()}/0"
    before = REGISTRY.get_sample_value("notifications_gateway_rate_limit_fail_open_total") or 0
    async with start_gateway(gw_settings(redis_url=closed)) as gw:
        body = send_body(upstream.add_user())
        headers = {**gw.headers, "Idempotency-Key": uuid.uuid4().hex}
        first = await gw.client.post(SEND, json=body, headers=headers)
        assert first.status_code == 202, first.text
        _headers_ok(first.headers)
        replay = await gw.client.post(SEND, json=body, headers=headers)
        assert replay.status_code == 202 and replay.headers["idempotency-replayed"] == "true"
        assert replay.json()["data"]["notification_id"] == first.json()["data"]["notification_id"]
        health = await gw.client.get("/health")
        assert health.status_code == 503
        assert health.json()["data"]["checks"]["redis"] == "down"
    after = REGISTRY.get_sample_value("notifications_gateway_rate_limit_fail_open_total") or 0
    assert after - before >= 2
