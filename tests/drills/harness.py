"""What every fault drill shares: its own stack, a known batch of notifications, the books.

A drill starts the whole stack (free ports, this run's database and vhost), sends a batch in
which every notification carries a unique marker, injects one fault, then waits until each
accepted notification is terminal and counts what the SMTP inbox and the FCM stand-in
received per marker. The tally is printed as the drill's last line:

    drill NAME: sent=… accepted=… delivered=… failed=… duplicates=… lost=… unexpected=… stuck=…

`duplicates` counts copies a user would see twice (another `Message-ID`, another collapse key);
`lost` is a notification that reads `delivered` but never arrived; `unexpected` a send that got
no 202 (after the retries any client makes with the same request id) and arrived anyway; `stuck` one still open when the drill gave up waiting;
`same_id_copies` copies that repeat one already received under the same identity, which the
mailbox or device replaces (the one window left: a crash after the provider accepted).
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
import httpx
from sqlalchemy.engine import make_url

from devtools.stack import Stack, default_specs
from scripts.seed import seed_all
from shared.settings import Settings
from tests.e2e.conftest import stack_env, stack_settings

TERMINAL = {"delivered", "failed", "skipped", "expired", "cancelled"}
INBOX_CAPACITY = 50_000
SEND_TRIES = 3

# Drills send far more to one user than the production limits allow one user a minute.
DRILL_ENV = {"GATEWAY_RATE_LIMIT_PER_USER": "1000000", "GATEWAY_RATE_LIMIT_PER_KEY": "1000000"}


@dataclass
class Sent:
    index: int
    marker: str
    channel: str
    status_code: int
    notification_id: str | None


@dataclass
class Tally:
    name: str
    sent: int = 0
    accepted: int = 0
    delivered: int = 0
    failed: int = 0
    duplicates: int = 0
    lost: int = 0
    unexpected: int = 0
    stuck: int = 0
    same_id_copies: int = 0
    """Copies that repeat one already received with the same `Message-ID` / collapse key:
    the mailbox or device replaces, not adds (the crash-after-accept window, made harmless)."""
    received: Counter[str] = field(default_factory=Counter)

    def line(self) -> str:
        return (
            f"drill {self.name}: sent={self.sent} accepted={self.accepted} "
            f"delivered={self.delivered} failed={self.failed} duplicates={self.duplicates} "
            f"lost={self.lost} unexpected={self.unexpected} stuck={self.stuck} "
            f"same_id_copies={self.same_id_copies}"
        )


class Drill:
    def __init__(self, name: str, settings: Settings, stack: Stack, seeded: dict[str, Any]):
        self.name = name
        self.settings = settings
        self.stack = stack
        self.demo_user_id = str(seeded["user_service"]["demo_user_id"])
        self.run_marker = uuid.uuid4().hex[:8]
        self.sent: list[Sent] = []
        self.last_errors: Counter[str | None] = Counter()

    @classmethod
    async def create(
        cls,
        name: str,
        base: Settings,
        rabbitmq_url: str,
        log_dir: Path,
        *,
        env: dict[str, str] | None = None,
        **overrides: Any,
    ) -> Drill:
        """`overrides` are settings every process shares; `env` reaches one service's own
        settings (the gateway's reconciler, say) as environment variables."""
        settings = stack_settings(base, rabbitmq_url).model_copy(update=overrides)
        seeded = await seed_all(settings)
        specs = default_specs(settings)
        for spec in specs:
            if spec.name == "smtp-inbox":  # keep every message a drill sends
                spec.args = ["--max-messages", str(INBOX_CAPACITY)]
        stack = Stack(specs, {**stack_env(settings), **DRILL_ENV, **(env or {})}, log_dir)
        return cls(name, settings, stack, seeded)

    # --- traffic ------------------------------------------------------------------------
    @property
    def api_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.settings.demo_api_key.get_secret_value()}"}

    async def send_batch(
        self,
        count: int,
        *,
        rate: float,
        channels: Sequence[str] = ("email",),
        user_id: str | None = None,
        during: Callable[[int], Awaitable[None]] | None = None,
        concurrency: int = 64,
    ) -> list[Sent]:
        """Send `count` notifications open-loop at `rate`/s, cycling through `channels`;
        `during(i)` runs before the i-th send is started. Returns this batch's sends."""
        batch: list[Sent] = []
        gate = asyncio.Semaphore(concurrency)
        limits = httpx.Limits(max_connections=concurrency)
        async with httpx.AsyncClient(
            base_url=self.settings.api_gateway_url,
            headers=self.api_headers,
            timeout=15,
            limits=limits,
        ) as client:
            start = time.perf_counter()
            tasks: list[asyncio.Task[None]] = []
            for i in range(count):
                if during is not None:
                    await during(i)
                await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
                sent = Sent(
                    len(self.sent),
                    f"{self.run_marker}-{len(self.sent)}",
                    channels[i % len(channels)],
                    0,
                    None,
                )
                self.sent.append(sent)
                batch.append(sent)
                await gate.acquire()
                tasks.append(asyncio.create_task(self._post(client, sent, user_id, gate)))
            await asyncio.gather(*tasks)
        return batch

    async def _post(
        self, client: httpx.AsyncClient, sent: Sent, user_id: str | None, gate: asyncio.Semaphore
    ) -> None:
        body = {
            "notification_type": sent.channel,
            "user_id": user_id or self.demo_user_id,
            "template_code": "welcome",
            "variables": {"name": sent.marker, "link": "https://example.com/drill"},
            "request_id": str(uuid.uuid4()),
        }
        try:
            # As every client should (ours does): a 503 or a lost answer is retried with the
            # same request id, which replays the first answer if the first try did commit.
            for _ in range(SEND_TRIES):
                try:
                    response = await client.post("/v1/notifications/send", json=body)
                except httpx.HTTPError:
                    sent.status_code = 0
                    continue
                sent.status_code = response.status_code
                if response.status_code == 202:
                    sent.notification_id = response.json()["data"]["notification_id"]
                if response.status_code not in (409, 503):
                    break
                await asyncio.sleep(0.5)  # the client's backoff, not a synchronisation
        finally:
            gate.release()

    # --- the stack's state ----------------------------------------------------------------
    @asynccontextmanager
    async def db(self) -> AsyncIterator[asyncpg.Connection]:
        dsn = make_url(self.settings.database_url).set(drivername="postgresql")
        conn = await asyncpg.connect(dsn.render_as_string(hide_password=False))
        try:
            yield conn
        finally:
            await conn.close()

    async def rows(self, ids: Sequence[str] | None = None) -> list[asyncpg.Record]:
        """Status rows of the given notifications (default: every accepted one)."""
        wanted = [uuid.UUID(i) for i in ids] if ids is not None else self.accepted_ids()
        async with self.db() as conn:
            return await conn.fetch(
                "SELECT id, status, status_reason, last_error, attempts, attempt_claims, payload,"
                " notification_type FROM api_gateway.notification_statuses"
                " WHERE id = ANY($1::uuid[])",
                wanted,
            )

    def accepted_ids(self) -> list[uuid.UUID]:
        return [uuid.UUID(s.notification_id) for s in self.sent if s.notification_id]

    async def statuses(self) -> dict[str, str]:
        rows = await self.rows()
        self.last_errors = Counter(r["last_error"] for r in rows if r["status"] == "failed")
        return {str(r["id"]): r["status"] for r in rows}

    async def wait_until(
        self, condition: Callable[[], Awaitable[bool]], *, timeout: float, what: str
    ) -> None:
        deadline = time.monotonic() + timeout
        while not await condition():
            if time.monotonic() > deadline:
                raise TimeoutError(f"drill {self.name}: {what} did not happen in {timeout}s")
            await asyncio.sleep(0.05)

    async def publish_raw(self, payloads: Sequence[tuple[str, bytes]]) -> None:
        """Publish (routing key, body) pairs straight to the work exchange, confirmed."""
        connection = await aio_pika.connect(self.settings.rabbitmq_url)
        try:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange("notifications.direct")
            await asyncio.gather(
                *(
                    exchange.publish(
                        aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                        routing_key=routing_key,
                    )
                    for routing_key, body in payloads
                )
            )
        finally:
            await connection.close()

    async def queue_depth(self, queue: str) -> int:
        connection = await aio_pika.connect(self.settings.rabbitmq_url)
        try:
            channel = await connection.channel()
            declared = await channel.declare_queue(queue, passive=True)
            return int(declared.declaration_result.message_count or 0)
        finally:
            await connection.close()

    async def purge(self, queue: str) -> int:
        connection = await aio_pika.connect(self.settings.rabbitmq_url)
        try:
            channel = await connection.channel()
            declared = await channel.declare_queue(queue, passive=True)
            result = await declared.purge()
            return int(result.message_count or 0)
        finally:
            await connection.close()

    async def worker_metric(self, service: str, name: str, **labels: str) -> float | None:
        """One sample of a worker's `/metrics` (None if absent)."""
        url = f"{getattr(self.settings, f'{service}_url')}/metrics"
        async with httpx.AsyncClient(timeout=5) as client:
            text = (await client.get(url)).text
        wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in text.splitlines():
            head, _, value = line.rpartition(" ")
            if head == (f"{name}{{{wanted}}}" if wanted else name):
                return float(value)
        return None

    # --- the books ----------------------------------------------------------------------
    async def received(self, channel: str) -> dict[str, list[str]]:
        """Per marker, the identity of every copy that arrived: the email's `Message-ID`, or
        the push's collapse key (its notification id). Copies of one identity replace each
        other in the mailbox or on the device; copies of two are two messages to the user."""
        pattern = re.compile(re.escape(self.run_marker) + r"-\d+")
        found: dict[str, list[str]] = {}
        async with httpx.AsyncClient(timeout=10) as client:
            if channel == "email":
                url = f"http://127.0.0.1:{self.settings.inbox_http_port}/api/v1/messages"
                copies: list[tuple[str, str]] = []
                while True:
                    params = {"start": len(copies), "limit": 5000}
                    page = (await client.get(url, params=params)).json()["messages"]
                    copies.extend((m["Subject"], m["MessageID"]) for m in page)
                    if len(page) < 5000:
                        break
            else:
                listing = (
                    await client.get(f"{self.settings.fcm_base_url}/emulator/messages")
                ).json()
                copies = [(str(m), _collapse_key(m)) for m in _messages(listing)]
        for text, identity in copies:
            for marker in set(pattern.findall(text)):
                found.setdefault(marker, []).append(identity)
        return found

    async def settle(self, timeout: float = 60.0) -> Tally:
        """Wait until every accepted notification is terminal, then count."""
        deadline = time.monotonic() + timeout
        while True:
            statuses = await self.statuses()
            if all(v in TERMINAL for v in statuses.values()) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        received: dict[str, list[str]] = {}
        for channel in {s.channel for s in self.sent}:
            received.update(await self.received(channel))
        tally = Tally(self.name, sent=len(self.sent))
        for s in self.sent:
            copies = received.get(s.marker, [])
            tally.received[s.marker] = len(copies)
            if not s.notification_id:
                tally.unexpected += bool(copies)
                continue
            status = statuses.get(s.notification_id)
            tally.accepted += 1
            tally.delivered += status == "delivered"
            tally.failed += status == "failed"
            tally.stuck += status not in TERMINAL
            tally.duplicates += max(0, len(set(copies)) - 1)
            tally.same_id_copies += len(copies) - len(set(copies))
            tally.lost += status == "delivered" and not copies
        if tally.failed:
            print(f"drill {self.name}: failures by last error: {dict(self.last_errors)}")
        if tally.stuck:
            open_ones = Counter(v for v in statuses.values() if v not in TERMINAL)
            print(f"drill {self.name}: still open by status: {dict(open_ones)}")
        print(tally.line())
        return tally


def assert_books_balance(tally: Tally) -> None:
    """Every accepted notification delivered exactly once; nothing else arrived."""
    assert tally.accepted > 0, tally.line()
    assert tally.stuck == 0, tally.line()
    assert tally.lost == 0, tally.line()
    assert tally.failed == 0, tally.line()
    assert tally.delivered == tally.accepted, tally.line()
    assert tally.duplicates == 0, tally.line()
    assert tally.unexpected == 0, tally.line()


def _collapse_key(message: Any) -> str:
    """The device and the notification id a push carries in its data (and as its Android
    tag): two copies with the same key replace each other on that device."""
    if isinstance(message, dict):
        body = message.get("message", {})
        data = body.get("data") if isinstance(body, dict) else None
        if isinstance(data, dict) and "notification_id" in data:
            return f"{message.get('token')}/{data['notification_id']}"
    return str(message)


def _messages(received: Any) -> list[Any]:
    if isinstance(received, dict):
        data = received.get("data", received)
        return list(data.get("messages", [])) if isinstance(data, dict) else list(data)
    return list(received)
