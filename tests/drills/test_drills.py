"""Fault drills: a known batch of notifications while one fault is injected, then the books.

Every accepted notification must end `delivered`, arrive exactly once, and nothing may be left
in `queued` or `processing`. Each drill is bounded in time and prints its tally last.
These stop and start shared services, so they run one after another.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from devtools.fault_proxy import FaultProxy, Mode
from devtools.stack import free_port
from shared.settings import Settings
from tests.drills.harness import Drill, Tally

pytestmark = pytest.mark.drill

BATCH = 60
RATE = 30.0


def assert_books_balance(tally: Tally, *, allowed_duplicates: int = 0) -> None:
    assert tally.accepted > 0
    assert tally.stuck == 0, tally.line()
    assert tally.lost == 0, tally.line()
    assert tally.failed == 0, tally.line()
    assert tally.delivered == tally.accepted, tally.line()
    assert tally.duplicates <= allowed_duplicates, tally.line()


@pytest.fixture
async def drill_factory(base_settings: Settings, make_vhost, tmp_path: Path) -> AsyncIterator:  # type: ignore[no-untyped-def, type-arg]
    drills: list[Drill] = []
    proxies: list[FaultProxy] = []

    async def make(name: str, **overrides: object) -> Drill:
        drill = await Drill.create(
            name, base_settings, make_vhost(name.replace("-", "_")), tmp_path / name, **overrides
        )
        drill.stack.start()
        await asyncio.to_thread(drill.stack.wait_healthy, timeout=60)
        drills.append(drill)
        return drill

    def proxy_to(host: str, port: int) -> FaultProxy:
        proxy = FaultProxy(free_port(), host, port).start()
        proxies.append(proxy)
        return proxy

    make.proxy_to = proxy_to  # type: ignore[attr-defined]
    yield make
    for drill in drills:
        await asyncio.to_thread(drill.stack.stop)
    for proxy in proxies:
        proxy.stop()


async def test_worker_killed_mid_stream_then_restarted(drill_factory) -> None:  # type: ignore[no-untyped-def]
    drill: Drill = await drill_factory("worker-sigkill")

    async def kill_and_restart(i: int) -> None:
        if i == BATCH // 2:
            drill.stack.kill("email_service")
            drill.stack.start("email_service")

    await drill.send_batch(BATCH, rate=RATE, during=kill_and_restart)
    await asyncio.to_thread(drill.stack.wait_healthy, "email_service", timeout=30)
    tally = await drill.settle()
    # The one documented window: a message the SMTP server accepted in the instant before its
    # `delivered` row was written is sent again after the kill. At most the prefetch.
    assert_books_balance(tally, allowed_duplicates=drill.settings.worker_prefetch)


async def test_rabbitmq_restarted_while_the_gateway_accepts(drill_factory) -> None:  # type: ignore[no-untyped-def]
    drill: Drill = await drill_factory("rabbitmq-restart")

    async def restart_broker(i: int) -> None:
        if i == BATCH // 3:
            await asyncio.to_thread(_rabbitmqctl, "stop_app")
        if i == BATCH // 3 + 10:
            await asyncio.to_thread(_rabbitmqctl, "start_app")

    await drill.send_batch(BATCH, rate=RATE, during=restart_broker)
    tally = await drill.settle(timeout=90)
    assert_books_balance(tally)


async def test_postgres_connections_cut_for_a_few_seconds(
    drill_factory, base_settings: Settings
) -> None:  # type: ignore[no-untyped-def]
    url = make_url(base_settings.database_url)
    proxy = drill_factory.proxy_to(url.host or "127.0.0.1", url.port or 5432)
    proxied = url.set(host="127.0.0.1", port=proxy.listen_port).render_as_string(
        hide_password=False
    )
    drill: Drill = await drill_factory("postgres-cut", database_url=proxied)

    async def cut(i: int) -> None:
        if i == BATCH // 3:
            proxy.set_mode(Mode.REFUSE)
        if i == BATCH // 3 + 3 * int(RATE) // 10:
            proxy.set_mode(Mode.PASS)

    await drill.send_batch(BATCH, rate=RATE, during=cut)
    proxy.set_mode(Mode.PASS)
    tally = await drill.settle(timeout=90)
    assert_books_balance(tally)


async def test_redis_stopped_for_a_few_seconds(drill_factory, base_settings: Settings) -> None:  # type: ignore[no-untyped-def]
    proxy = drill_factory.proxy_to("127.0.0.1", 6379)
    db = base_settings.redis_url.rsplit("/", 1)[-1]
    drill: Drill = await drill_factory(
        "redis-stopped", redis_url=f"redis://127.0.0.1:{proxy.listen_port}/{db}"
    )

    async def stop_redis(i: int) -> None:
        if i == BATCH // 3:
            proxy.set_mode(Mode.REFUSE)
        if i == 2 * BATCH // 3:
            proxy.set_mode(Mode.PASS)

    await drill.send_batch(BATCH, rate=RATE, during=stop_redis)
    tally = await drill.settle()
    assert_books_balance(tally)
    # Rate limits fail open: Redis being away costs no accepted request.
    assert tally.accepted == tally.sent


async def test_smtp_server_refusing_for_a_while(drill_factory) -> None:  # type: ignore[no-untyped-def]
    # Production retries span about a minute; the drill scales that down but keeps the budget
    # (about 4-8 s over five attempts) longer than the outage (about 1 s), as it must be.
    drill: Drill = await drill_factory(
        "smtp-refusing",
        retry_base_delay_ms=500,
        retry_delay_levels_ms=[250, 500, 1000, 2000, 4000],
    )
    control = f"http://127.0.0.1:{drill.settings.inbox_http_port}/api/control/faults"

    async def refuse(i: int) -> None:
        async with httpx.AsyncClient(timeout=5) as client:
            if i == BATCH // 4:
                (await client.post(control, json={"mode": "refuse"})).raise_for_status()
            if i == BATCH // 4 + int(RATE):
                (await client.post(control, json={"mode": "none"})).raise_for_status()

    await drill.send_batch(BATCH, rate=RATE, during=refuse)
    tally = await drill.settle(timeout=90)
    assert_books_balance(tally)


def _rabbitmqctl(command: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", command], check=True, capture_output=True, timeout=120)
