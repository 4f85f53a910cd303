"""Fault drills: a known batch of notifications while one fault is injected, then the books.

Every accepted notification must end `delivered` (or `skipped` where the drill says so),
arrive exactly once, and nothing may be left open. Each drill is bounded in time and prints its
tally last. Drills start a whole stack of their own (database, vhost, free ports) and inject
faults only into their own processes and proxies, never the shared services; they still run
one after another, since timing matters. Waiting between two injected faults (a kill every
2 s, an outage of 90 s) is the fault's own schedule, not synchronisation: every outcome is
waited for as a condition with a deadline.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy.engine import make_url

from devtools.fault_proxy import FaultProxy, Mode
from devtools.stack import free_port
from shared.settings import Settings
from tests.drills.harness import Drill, assert_books_balance

pytestmark = pytest.mark.drill

BATCH = 60
RATE = 30.0
BOTH = ("email", "push")
# A lapsed claim is taken over this soon: short, so a killed worker's messages move on quickly.
LEASE = {"claim_lease_seconds": 3.0}
WORKERS = {"email": "email_service", "push": "push_service"}


@pytest.fixture
async def drill_factory(base_settings: Settings, make_vhost, tmp_path: Path) -> AsyncIterator:  # type: ignore[no-untyped-def, type-arg]
    drills: list[Drill] = []
    proxies: list[FaultProxy] = []

    async def make(name: str, *, env: dict[str, str] | None = None, **overrides: Any) -> Drill:
        drill = await Drill.create(
            name,
            base_settings,
            make_vhost(name.replace("-", "_")),
            tmp_path / name,
            env=env,
            **overrides,
        )
        drills.append(drill)
        drill.stack.start()
        await asyncio.to_thread(drill.stack.wait_healthy, timeout=60)
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


async def _restart(drill: Drill, service: str, *, kill: bool) -> None:
    if kill:
        drill.stack.kill(service)
    else:
        await asyncio.to_thread(drill.stack.stop, service)
    drill.stack.start(service)
    await asyncio.to_thread(drill.stack.wait_healthy, service, timeout=30)


async def _queue_holds(drill: Drill, queue: str, count: int) -> None:
    async def holds() -> bool:
        return await drill.queue_depth(queue) >= count

    await drill.wait_until(holds, timeout=60, what=f"{count} messages in {queue}")


# --- crashes ---------------------------------------------------------------------------


async def test_workers_sigkilled_every_2s_five_times_with_2000_queued(drill_factory) -> None:  # type: ignore[no-untyped-def]
    drill: Drill = await drill_factory("worker-sigkill", **LEASE)
    for service in WORKERS.values():
        await asyncio.to_thread(drill.stack.stop, service)
    await drill.send_batch(2000, rate=500.0, channels=BOTH)
    await _queue_holds(drill, "email.queue", 1000)
    await _queue_holds(drill, "push.queue", 1000)
    for service in WORKERS.values():
        drill.stack.start(service)
    for _ in range(5):
        await asyncio.to_thread(drill.stack.wait_healthy, *WORKERS.values(), timeout=30)
        await asyncio.sleep(2.0)  # the fault's schedule: a kill every 2 s of work
        for service in WORKERS.values():
            drill.stack.kill(service)
            drill.stack.start(service)
    tally = await drill.settle(timeout=180)
    taken_over = [r for r in await drill.rows() if r["attempt_claims"] > 1]
    print(f"drill worker-sigkill: claims taken over after a kill: {len(taken_over)}")
    assert taken_over, "no message was in a killed worker's hands: the drill proved nothing"
    assert_books_balance(tally)


async def test_a_worker_sigtermed_mid_stream_loses_and_repeats_nothing(drill_factory) -> None:  # type: ignore[no-untyped-def]
    drill: Drill = await drill_factory("worker-sigterm", **LEASE)

    async def terminate(i: int) -> None:
        if i == BATCH // 2:
            for service in WORKERS.values():
                drill.stack.signal(service, signal.SIGTERM)
        if i == BATCH // 2 + 10:
            for service in WORKERS.values():
                await _restart(drill, service, kill=False)

    await drill.send_batch(BATCH, rate=RATE, channels=BOTH, during=terminate)
    assert_books_balance(await drill.settle())


async def test_two_copies_of_each_of_200_messages_are_sent_once(drill_factory) -> None:  # type: ignore[no-untyped-def]
    drill: Drill = await drill_factory("two-copies")
    for service in WORKERS.values():
        await asyncio.to_thread(drill.stack.stop, service)
    await drill.send_batch(200, rate=400.0, channels=BOTH)
    await _queue_holds(drill, "email.queue", 100)
    await _queue_holds(drill, "push.queue", 100)
    copies = [(r["notification_type"], bytes(r["payload"])) for r in await drill.rows()]
    assert len(copies) == 200
    await drill.publish_raw(copies)  # a second copy of every message, straight to the exchange
    for service in WORKERS.values():
        drill.stack.start(service)
    tally = await drill.settle(timeout=90)
    assert_books_balance(tally)
    assert tally.same_id_copies == 0, tally.line()


async def test_a_poison_message_ends_failed_and_replay_delivers_it_once(drill_factory) -> None:  # type: ignore[no-untyped-def]
    """The message crashes its worker every time (SIGKILL while the SMTP server holds its DATA):
    the claim count in PostgreSQL bounds the loop, not the worker's memory."""
    drill: Drill = await drill_factory("poison", **LEASE, max_claims_per_attempt=3)
    faults = f"http://127.0.0.1:{drill.settings.inbox_http_port}/api/control/faults"
    async with httpx.AsyncClient(timeout=5) as client:
        (await client.post(faults, json={"mode": "stall"})).raise_for_status()
        (sent,) = await drill.send_batch(1, rate=1.0)
        assert sent.notification_id is not None
        for claims in range(1, 4):

            async def claimed(n: int = claims) -> bool:
                (row,) = await drill.rows([str(sent.notification_id)])
                return bool(row["status"] == "processing" and row["attempt_claims"] >= n)

            await drill.wait_until(claimed, timeout=60, what=f"claim {claims}")
            await _restart(drill, "email_service", kill=True)

        async def failed() -> bool:
            (row,) = await drill.rows([str(sent.notification_id)])
            return bool(row["status"] == "failed")

        await drill.wait_until(failed, timeout=60, what="the poison marked failed")
        (row,) = await drill.rows([str(sent.notification_id)])
        assert row["status_reason"] == "handler_error", row
        # Fixed: the SMTP server answers again, and an operator replays the dead letter.
        (await client.post(faults, json={"mode": "none"})).raise_for_status()
        replay = await client.post(
            f"{drill.settings.email_service_url}/admin/dlq/replay",
            headers={"X-Internal-API-Key": drill.settings.internal_api_key.get_secret_value()},
        )
        assert replay.status_code == 200, replay.text
        assert replay.json()["data"]["replayed"] == [sent.notification_id]
    assert_books_balance(await drill.settle())


# --- dependencies cut --------------------------------------------------------------------


async def test_postgres_connections_cut_for_three_seconds(
    drill_factory, base_settings: Settings
) -> None:  # type: ignore[no-untyped-def]
    url = make_url(base_settings.database_url)
    proxy = drill_factory.proxy_to(url.host or "127.0.0.1", url.port or 5432)
    proxied = url.set(host="127.0.0.1", port=proxy.listen_port).render_as_string(
        hide_password=False
    )
    drill: Drill = await drill_factory("postgres-cut", database_url=proxied)
    # Three phases, each waited for, so sends fall before, during and after the cut whatever
    # the machine's load does to the pacing.
    before = await drill.send_batch(30, rate=RATE, channels=BOTH)
    proxy.set_mode(Mode.REFUSE)
    cut_at = time.monotonic()
    await drill.send_batch(30, rate=10.0, channels=BOTH)
    await asyncio.sleep(max(0.0, cut_at + 3.5 - time.monotonic()))  # the outage's length
    proxy.set_mode(Mode.PASS)
    outage = time.monotonic() - cut_at
    after = await drill.send_batch(30, rate=RATE, channels=BOTH)
    print(f"drill postgres-cut: outage {outage:.1f} s")
    assert outage >= 3.0
    assert all(s.status_code == 202 for s in before), [s.status_code for s in before]
    assert any(s.status_code == 202 for s in after), [s.status_code for s in after]
    tally = await drill.settle(timeout=90)
    assert_books_balance(tally)


async def test_the_broker_unreachable_while_the_gateway_accepts(drill_factory) -> None:  # type: ignore[no-untyped-def]
    drill: Drill = await drill_factory("broker-unreachable")
    broker = urlsplit(drill.settings.rabbitmq_url)
    proxy = drill_factory.proxy_to(broker.hostname or "127.0.0.1", broker.port or 5672)
    credentials = f"{broker.username}:{broker.password}@" if broker.username else ""
    proxied = broker._replace(netloc=f"{credentials}127.0.0.1:{proxy.listen_port}").geturl()
    # Every service reaches RabbitMQ through the proxy; the drill's own checks go direct.
    await asyncio.to_thread(drill.stack.stop)
    drill.stack.env["RABBITMQ_URL"] = proxied
    drill.stack.start()
    await asyncio.to_thread(drill.stack.wait_healthy, timeout=60)

    async def cut(i: int) -> None:
        if i == BATCH // 3:
            proxy.set_mode(Mode.REFUSE)
        if i == BATCH // 3 + 5 * int(RATE) // 2:
            proxy.set_mode(Mode.PASS)

    await drill.send_batch(BATCH, rate=RATE, channels=BOTH, during=cut)
    proxy.set_mode(Mode.PASS)
    tally = await drill.settle(timeout=120)
    refused = [s for s in drill.sent if s.status_code != 202]
    print(f"drill broker-unreachable: answered other than 202: {len(refused)}")
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


async def test_both_providers_down_for_90s_then_everything_is_delivered(drill_factory) -> None:  # type: ignore[no-untyped-def]
    """SMTP refusing and FCM answering 503 for 90 s: the workers pause consuming instead of
    burning attempts, and after recovery every notification is delivered, with no replay."""
    drill: Drill = await drill_factory("providers-down-90s", provider_probe_seconds=2.0)
    inbox = f"http://127.0.0.1:{drill.settings.inbox_http_port}/api/control/faults"
    fcm = f"{drill.settings.fcm_base_url}/emulator/faults"
    async with httpx.AsyncClient(timeout=5) as client:
        (await client.post(inbox, json={"mode": "refuse"})).raise_for_status()
        fault = {"token": "*", "fault": "unavailable", "seconds": 1}
        (await client.post(fcm, json=fault)).raise_for_status()
        started = time.monotonic()
        await drill.send_batch(BATCH, rate=RATE, channels=BOTH)

        async def paused() -> bool:
            states = [
                await drill.worker_metric(service, "notification_provider_up", channel=channel)
                for channel, service in WORKERS.items()
            ]
            return states == [0.0, 0.0]

        await drill.wait_until(paused, timeout=60, what="both consumers paused")
        print("drill providers-down-90s: both workers paused consuming")
        await asyncio.sleep(max(0.0, started + 90 - time.monotonic()))  # the outage's length
        (await client.post(inbox, json={"mode": "none"})).raise_for_status()
        (await client.delete(fcm)).raise_for_status()
    tally = await drill.settle(timeout=120)
    assert_books_balance(tally)


async def test_a_purged_queue_is_delivered_by_the_reconciler(drill_factory) -> None:  # type: ignore[no-untyped-def]
    drill: Drill = await drill_factory(
        "queue-purged",
        env={
            "RECONCILE_INTERVAL_SECONDS": "1",
            "RECONCILE_MARGIN_SECONDS": "1",
            "RECONCILE_QUEUED_AFTER_SECONDS": "3",
        },
    )
    await asyncio.to_thread(drill.stack.stop, "email_service")
    await drill.send_batch(500, rate=400.0)
    await _queue_holds(drill, "email.queue", 500)
    purged = await drill.purge("email.queue")
    print(f"drill queue-purged: purged {purged} messages")
    assert purged >= 500
    drill.stack.start("email_service")
    assert_books_balance(await drill.settle(timeout=90))


# --- held until later ----------------------------------------------------------------------


async def test_1000_scheduled_20s_ahead_survive_restarts_and_go_once_on_time(drill_factory) -> None:  # type: ignore[no-untyped-def]
    drill: Drill = await drill_factory("scheduled-restart")

    def in_20s() -> dict[str, Any]:
        return {"send_at": (datetime.now(UTC) + timedelta(seconds=20)).isoformat()}

    sends = await drill.send_batch(1000, rate=500.0, extra=in_20s)
    assert all(s.status_code == 202 for s in sends), {s.status_code for s in sends}
    # Before the release: the gateway (its relay holds the schedule) and a worker restart.
    drill.stack.kill("api_gateway")
    drill.stack.kill("email_service")
    drill.stack.start("api_gateway", "email_service")
    await asyncio.to_thread(drill.stack.wait_healthy, "api_gateway", "email_service", timeout=30)
    restarted = datetime.now(UTC)
    tally = await drill.settle(timeout=120)
    assert_books_balance(tally)
    async with drill.db() as conn:
        held, early = await conn.fetchrow(
            "SELECT count(*) FILTER (WHERE scheduled_for > $2),"
            "       count(*) FILTER (WHERE delivered_at < scheduled_for)"
            "  FROM api_gateway.notification_statuses WHERE id = ANY($1::uuid[])",
            drill.accepted_ids(),
            restarted,
        )
    print(f"drill scheduled-restart: {held} of 1000 were still held when the restarts ended")
    assert held > 0, "every release came before the restarts ended: the drill proved nothing"
    assert early == 0  # at or after its time, every one


# --- the user changed between accept and send --------------------------------------------


async def test_changes_between_accept_and_send_are_honoured(drill_factory) -> None:  # type: ignore[no-untyped-def]
    drill: Drill = await drill_factory("policy-at-delivery")
    users = UserAdmin(drill)
    opted_out = await users.register(devices=0)
    moved = await users.register(devices=0)
    unplugged = await users.register(devices=2)
    for service in WORKERS.values():
        await asyncio.to_thread(drill.stack.stop, service)
    (skip,) = await drill.send_batch(1, rate=1.0, user_id=opted_out.id)
    (move,) = await drill.send_batch(1, rate=1.0, user_id=moved.id)
    (push,) = await drill.send_batch(1, rate=1.0, user_id=unplugged.id, channels=("push",))
    new_address = f"moved-{uuid.uuid4().hex[:8]}@example.com"
    await users.update(opted_out, "put", "/preferences", {"email": False, "push": True})
    await users.update(
        moved, "patch", "", {"email": new_address, "current_password": moved.password}
    )
    await users.remove_device(unplugged, unplugged.devices[0])
    for service in WORKERS.values():
        drill.stack.start(service)
    tally = await drill.settle(timeout=60)
    rows = {str(r["id"]): r for r in await drill.rows()}
    assert (rows[skip.notification_id]["status"], rows[skip.notification_id]["status_reason"]) == (
        "skipped",
        "opted_out",
    )
    assert tally.received[skip.marker] == 0
    assert rows[move.notification_id]["status"] == "delivered"
    assert rows[push.notification_id]["status"] == "delivered"
    assert await users.inbox_recipients(move.marker) == [new_address]
    assert await users.push_tokens(push.marker) == [unplugged.devices[1]]
    assert tally.duplicates == 0 and tally.lost == 0 and tally.unexpected == 0, tally.line()


class _User:
    def __init__(self, user_id: str, email: str, password: str) -> None:
        self.id, self.email, self.password = user_id, email, password
        self.token = ""
        self.devices: list[str] = []

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


class UserAdmin:
    """What a user does to their own account, through the user service's public API."""

    def __init__(self, drill: Drill) -> None:
        self.drill = drill
        self.base = f"{drill.settings.user_service_url}/api/v1"

    async def register(self, *, devices: int) -> _User:
        email = f"drill-{uuid.uuid4().hex[:10]}@example.com"
        password = f"Quartz lantern {uuid.uuid4().hex[:8]} orbit"
        async with httpx.AsyncClient(timeout=10) as client:
            created = await client.post(
                f"{self.base}/users", json={"name": "Drill", "email": email, "password": password}
            )
            assert created.status_code == 201, created.text
            user = _User(created.json()["data"]["id"], email, password)
            login = await client.post(
                f"{self.base}/auth/login", json={"email": email, "password": password}
            )
            user.token = login.json()["data"]["access_token"]
            for _ in range(devices):
                token = f"drill-device-{uuid.uuid4().hex}"
                added = await client.post(
                    f"{self.base}/users/{user.id}/devices",
                    json={"token": token, "platform": "android"},
                    headers=user.headers,
                )
                assert added.status_code in (200, 201), added.text
                user.devices.append(token)
        return user

    async def update(self, user: _User, method: str, path: str, body: dict[str, Any]) -> None:
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.request(
                method, f"{self.base}/users/{user.id}{path}", json=body, headers=user.headers
            )
        assert response.status_code == 200, response.text

    async def remove_device(self, user: _User, token: str) -> None:
        async with httpx.AsyncClient(timeout=10) as client:
            listed = await client.get(f"{self.base}/users/{user.id}/devices", headers=user.headers)
            (device,) = [d for d in listed.json()["data"] if d["token"] == token]
            removed = await client.delete(
                f"{self.base}/users/{user.id}/devices/{device['id']}", headers=user.headers
            )
        assert removed.status_code in (200, 204), removed.text

    async def inbox_recipients(self, marker: str) -> list[str]:
        url = f"http://127.0.0.1:{self.drill.settings.inbox_http_port}/api/v1/messages"
        async with httpx.AsyncClient(timeout=10) as client:
            listing = (await client.get(url, params={"limit": 5000})).json()["messages"]
        return [to["Address"] for m in listing if marker in m["Subject"] for to in m["To"]]

    async def push_tokens(self, marker: str) -> list[str]:
        url = f"{self.drill.settings.fcm_base_url}/emulator/messages"
        async with httpx.AsyncClient(timeout=10) as client:
            listing = (await client.get(url)).json()["data"]
        messages = listing.get("messages", listing) if isinstance(listing, dict) else listing
        return [m["token"] for m in messages if marker in str(m)]
