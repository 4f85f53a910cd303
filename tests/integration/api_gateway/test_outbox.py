"""RabbitMQ down or cut during sends: every 202 is published once the broker is back, once.

The gateway reaches RabbitMQ through `devtools.fault_proxy`, so the test can refuse
and cut its connections while the real broker (and the test's tap on it) stays up.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager

import pytest

from devtools.fault_proxy import FaultProxy, Mode
from devtools.stack import free_port
from services.api_gateway.outbox import broker_ready
from services.api_gateway.settings import GatewaySettings
from tests.conftest import wait_for
from tests.integration.api_gateway.conftest import Running, Tap, send_body
from tests.integration.api_gateway.upstream import Upstream

SEND = "/v1/notifications/send"
StartGateway = Callable[[GatewaySettings], AbstractAsyncContextManager[Running]]


@pytest.fixture
def proxy() -> Iterator[FaultProxy]:
    fault_proxy = FaultProxy(free_port(), "127.0.0.1", 5672).start()
    try:
        yield fault_proxy
    finally:
        fault_proxy.stop()


def _through(proxy: FaultProxy, vhost_url: str) -> str:
    return vhost_url.replace("127.0.0.1:5672", f"127.0.0.1:{proxy.listen_port}")


async def _send_many(gw: Running, upstream: Upstream, count: int) -> list[str]:
    ids = []
    for _ in range(count):
        response = await gw.client.post(
            SEND, json=send_body(upstream.add_user()), headers=gw.headers
        )
        assert response.status_code == 202, response.text
        assert response.json()["data"]["status"] == "queued"
        ids.append(response.json()["data"]["notification_id"])
    return ids


async def _outbox_rows(gw: Running, ids: list[str]) -> int:
    count: int = await gw.gateway.pool.fetchval(
        "SELECT count(*) FROM api_gateway.outbox WHERE notification_id = ANY($1::uuid[])",
        [uuid.UUID(i) for i in ids],
    )
    return count


async def _all_published_once(gw: Running, tap: Tap, ids: list[str]) -> None:
    async def published() -> bool:
        await tap.drain()
        return set(ids) <= set(tap.ids())

    await wait_for(published, timeout=20, interval=0.1)
    await wait_for(lambda: _zero(_outbox_rows(gw, ids)), timeout=10)
    await tap.drain()
    seen = tap.ids()
    assert all(seen.count(i) == 1 for i in ids), seen


async def _zero(count: object) -> bool:
    return await count == 0  # type: ignore[misc]


async def test_broker_down_at_startup_sends_are_accepted_then_relayed(
    gw_settings: Callable[..., GatewaySettings],
    start_gateway: StartGateway,
    upstream: Upstream,
    tap: Tap,
    proxy: FaultProxy,
    gateway_vhost_url: str,
) -> None:
    upstream.add_template("welcome")
    proxy.set_mode(Mode.REFUSE)
    settings = gw_settings(rabbitmq_url=_through(proxy, gateway_vhost_url))
    async with start_gateway(settings) as gw:
        ids = await _send_many(gw, upstream, 5)
        health = await gw.client.get("/health")
        assert health.status_code == 503
        assert health.json()["data"]["checks"]["broker"] == "down"
        assert await _outbox_rows(gw, ids) == 5
        assert await tap.drain() == []

        proxy.set_mode(Mode.PASS)
        await _all_published_once(gw, tap, ids)
        assert (await gw.client.get("/health")).status_code == 200


async def test_broker_cut_mid_run_then_back_publishes_every_202_exactly_once(
    gw_settings: Callable[..., GatewaySettings],
    start_gateway: StartGateway,
    upstream: Upstream,
    tap: Tap,
    proxy: FaultProxy,
    gateway_vhost_url: str,
) -> None:
    upstream.add_template("welcome")
    settings = gw_settings(rabbitmq_url=_through(proxy, gateway_vhost_url))
    async with start_gateway(settings) as gw:
        before = await _send_many(gw, upstream, 2)
        await _all_published_once(gw, tap, before)

        proxy.set_mode(Mode.REFUSE)  # drops the live connection and refuses new ones
        await wait_for(lambda: _false(broker_ready(gw.gateway.publisher)), timeout=5)
        during = await _send_many(gw, upstream, 5)
        assert await _outbox_rows(gw, during) == 5

        proxy.set_mode(Mode.PASS)
        await _all_published_once(gw, tap, before + during)


async def _false(value: bool) -> bool:
    return not value
