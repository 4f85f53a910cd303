"""What every fault drill shares: its own stack, a known batch of notifications, the books.

A drill starts the whole stack (free ports, this run's database and vhost), sends a batch in
which every notification carries a unique marker, injects one fault, then waits until each
accepted notification is terminal and counts what the SMTP inbox and the FCM stand-in
received per marker. The tally (sent, accepted, delivered, duplicates, lost) is printed as the
drill's last line.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from devtools.stack import Stack, default_specs
from scripts.seed import seed_all
from shared.settings import Settings
from tests.e2e.conftest import stack_env, stack_settings


@dataclass
class Sent:
    index: int
    marker: str
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
    stuck: int = 0
    received: Counter[str] = field(default_factory=Counter)

    def line(self) -> str:
        return (
            f"drill {self.name}: sent={self.sent} accepted={self.accepted} "
            f"delivered={self.delivered} failed={self.failed} duplicates={self.duplicates} "
            f"lost={self.lost} stuck={self.stuck}"
        )


class Drill:
    def __init__(self, name: str, settings: Settings, log_dir: Path, demo_user_id: str) -> None:
        self.name = name
        self.settings = settings
        self.log_dir = log_dir
        self.demo_user_id = demo_user_id
        self.run_marker = uuid.uuid4().hex[:8]
        self.sent: list[Sent] = []
        self.last_errors: Counter[str | None] = Counter()
        self.stack = Stack(default_specs(settings), stack_env(settings), log_dir)

    @classmethod
    async def create(
        cls, name: str, base: Settings, rabbitmq_url: str, log_dir: Path, **overrides: Any
    ) -> Drill:
        settings = stack_settings(base, rabbitmq_url).model_copy(update=overrides)
        seeded = await seed_all(settings)
        return cls(name, settings, log_dir, str(seeded["user_service"]["demo_user_id"]))

    # --- traffic ------------------------------------------------------------------------
    async def send_batch(
        self,
        count: int,
        *,
        rate: float,
        channel: str = "email",
        during: Callable[[int], Awaitable[None]] | None = None,
    ) -> None:
        """Send `count` notifications at `rate`/s; `during(i)` runs before the i-th send."""
        headers = {"Authorization": f"Bearer {self.settings.demo_api_key.get_secret_value()}"}
        async with httpx.AsyncClient(
            base_url=self.settings.api_gateway_url, headers=headers, timeout=15
        ) as client:
            start = time.perf_counter()
            for i in range(count):
                if during is not None:
                    await during(i)
                await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
                marker = f"{self.run_marker}-{len(self.sent)}"
                body = {
                    "notification_type": channel,
                    "user_id": self.demo_user_id,
                    "template_code": "welcome",
                    "variables": {"name": marker, "link": "https://example.com/drill"},
                    "request_id": str(uuid.uuid4()),
                }
                try:
                    response = await client.post("/v1/notifications/send", json=body)
                    code = response.status_code
                    nid = response.json()["data"]["notification_id"] if code == 202 else None
                except httpx.HTTPError:
                    code, nid = 0, None
                self.sent.append(Sent(len(self.sent), marker, code, nid))

    # --- the books ----------------------------------------------------------------------
    async def statuses(self) -> dict[str, str]:
        dsn = make_url(self.settings.database_url).set(drivername="postgresql")
        conn = await asyncpg.connect(dsn.render_as_string(hide_password=False))
        try:
            ids = [uuid.UUID(s.notification_id) for s in self.sent if s.notification_id]
            rows = await conn.fetch(
                "SELECT id, status, last_error FROM api_gateway.notification_statuses"
                " WHERE id = ANY($1::uuid[])",
                ids,
            )
        finally:
            await conn.close()
        self.last_errors = Counter(r["last_error"] for r in rows if r["status"] == "failed")
        return {str(r["id"]): r["status"] for r in rows}

    async def received_markers(self, channel: str) -> Counter[str]:
        pattern = re.compile(re.escape(self.run_marker) + r"-\d+")
        async with httpx.AsyncClient(timeout=10) as client:
            if channel == "email":
                url = f"http://127.0.0.1:{self.settings.inbox_http_port}/api/v1/messages"
                listing = (await client.get(url, params={"limit": 5000})).json()
                texts = [m["Subject"] for m in listing["messages"]]
            else:
                listing = (
                    await client.get(f"{self.settings.fcm_base_url}/emulator/messages")
                ).json()
                texts = [str(m) for m in _messages(listing)]
        found: Counter[str] = Counter()
        for text in texts:
            for marker in set(pattern.findall(text)):
                found[marker] += 1
        return found

    async def settle(self, channel: str = "email", timeout: float = 60.0) -> Tally:
        """Wait until every accepted notification is terminal, then count."""
        deadline = time.monotonic() + timeout
        terminal = {"delivered", "failed", "skipped"}
        while True:
            statuses = await self.statuses()
            if all(v in terminal for v in statuses.values()) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        received = await self.received_markers(channel)
        accepted = [s for s in self.sent if s.notification_id]
        tally = Tally(self.name, sent=len(self.sent), accepted=len(accepted), received=received)
        for s in accepted:
            status = statuses.get(str(s.notification_id))
            copies = received.get(s.marker, 0)
            tally.delivered += status == "delivered"
            tally.failed += status == "failed"
            tally.stuck += status not in terminal
            tally.duplicates += max(0, copies - 1)
            tally.lost += status == "delivered" and copies == 0
        print(tally.line())
        if tally.failed:
            print(f"drill {self.name}: failures by last error: {dict(self.last_errors)}")
        return tally


def _messages(received: Any) -> list[Any]:
    if isinstance(received, dict):
        data = received.get("data", received)
        return list(data.get("messages", [])) if isinstance(data, dict) else list(data)
    return list(received)
