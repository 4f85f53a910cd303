"""Benchmark the running stack, open loop: `python -m scripts.bench --rate 300 --duration 30`.

Requests are sent on a fixed schedule whatever the answers do, and latency is measured from
each request's scheduled time, so a slow gateway shows up as latency instead of being hidden
by back-pressure. Prints one table (or `--json`): gateway accepted/s, latency percentiles and
errors by code; end to end delivered/s and accept-to-delivered percentiles (read from the
status table); the raw ceilings of RabbitMQ and a bare FastAPI endpoint measured in the same
run; CPU seconds per 1,000 notifications and peak memory per service.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import sys
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import asyncpg
from sqlalchemy.engine import make_url

from devtools.stack import free_port
from shared.notification_status import TERMINAL
from shared.settings import Settings, get_settings

SERVICES = {
    "api_gateway": "services.api_gateway",
    "email_service": "services.email_service",
    "push_service": "services.push_service",
    "user_service": "services.user_service",
    "template_service": "services.template_service",
    "smtp_inbox (stand-in)": "devtools.smtp_inbox",
    "fcm_standin (stand-in)": "devtools.fcm_standin",
}
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Sample:
    scheduled: float
    latency_ms: float
    status: int
    code: str | None
    notification_id: str | None


@dataclass
class GatewayFigures:
    rate: float
    duration_s: float
    sent: int
    accepted: int
    accepted_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    errors: dict[str, int] = field(default_factory=dict)


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return round(ordered[index], 2)


# --- demo users -----------------------------------------------------------------------------


# Strong enough for the user service's password check (a weak one is refused with 422).
BENCH_PASSWORD = "Bench lantern quartz orbit 7319"


async def ensure_users(settings: Settings, count: int) -> list[str]:
    """`count` bench users with email and push on and one device each, made through the API."""
    base = settings.user_service_url
    async with aiohttp.ClientSession(base_url=base) as http:
        login = await http.post(
            "/api/v1/auth/login",
            json={
                "email": settings.demo_admin_email,
                "password": settings.demo_admin_password.get_secret_value(),
            },
        )
        token = (await login.json())["data"]["access_token"]
        admin = {"Authorization": f"Bearer {token}"}
        user_ids: list[str] = []
        for i in range(count):
            email = f"bench-{i}@example.com"
            created = await http.post(
                "/api/v1/users",
                json={
                    "name": f"Bench {i}",
                    "email": email,
                    "password": BENCH_PASSWORD,
                    "preferences": {"email": True, "push": True},
                    "push_token": f"bench-device-{i}",
                },
            )
            if created.status == 201:
                user_ids.append((await created.json())["data"]["id"])
                continue
            if created.status != 409:
                raise SystemExit(
                    f"registering bench users failed ({created.status}: "
                    f"{(await created.json()).get('message')}); for a benchmark stack, raise "
                    "REGISTRATIONS_PER_ADDRESS_PER_HOUR on the user service"
                )
            found = await http.get("/api/v1/users", params={"email": email}, headers=admin)
            (user,) = [u for u in (await found.json())["data"] if u["email"] == email]
            user_ids.append(user["id"])
    return user_ids


# --- the open loop --------------------------------------------------------------------------


def _body(channel: str, user_id: str, i: int) -> dict[str, Any]:
    return {
        "notification_type": channel,
        "user_id": user_id,
        "template_code": "welcome",
        "variables": {"name": f"Bench {i}", "link": "https://example.com/start"},
        "request_id": str(uuid.uuid4()),
    }


async def open_loop(
    url: str, key: str, rate: float, duration: float, channel: str, users: list[str]
) -> tuple[GatewayFigures, list[Sample]]:
    total = int(rate * duration)
    channels = itertools.cycle(["email", "push"] if channel == "mixed" else [channel])
    samples: list[Sample] = []
    connector = aiohttp.TCPConnector(limit=2000)
    headers = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession(connector=connector, headers=headers) as http:

        async def one(i: int, scheduled: float) -> None:
            body = _body(next(channels), users[i % len(users)], i)
            status, code, notification_id = 0, None, None
            try:
                async with http.post(url, json=body, timeout=aiohttp.ClientTimeout(total=30)) as r:
                    status = r.status
                    payload = await r.json(content_type=None)
                    if status in (200, 202):
                        notification_id = payload["data"]["notification_id"]
                    else:
                        code = payload.get("error")
            except Exception as exc:  # count transport failures as their own error code
                code = f"transport:{type(exc).__name__}"
            samples.append(
                Sample(
                    scheduled,
                    (time.perf_counter() - scheduled) * 1000,
                    status,
                    code,
                    notification_id,
                )
            )

        start = time.perf_counter() + 0.2
        tasks = []
        for i in range(total):
            scheduled = start + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, scheduled)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start

    accepted = [s for s in samples if s.status in (200, 202)]
    latencies = [s.latency_ms for s in samples]
    errors = Counter(s.code or str(s.status) for s in samples if s.status not in (200, 202))
    figures = GatewayFigures(
        rate=rate,
        duration_s=round(elapsed, 2),
        sent=len(samples),
        accepted=len(accepted),
        accepted_per_s=round(len(accepted) / elapsed, 1),
        p50_ms=percentile(latencies, 50),
        p95_ms=percentile(latencies, 95),
        p99_ms=percentile(latencies, 99),
        errors=dict(errors),
    )
    return figures, samples


# --- end to end -----------------------------------------------------------------------------


def _asyncpg_dsn(settings: Settings) -> str:
    return (
        make_url(settings.database_url)
        .set(drivername="postgresql")
        .render_as_string(hide_password=False)
    )


async def end_to_end(settings: Settings, ids: list[str], timeout: float) -> dict[str, Any]:
    conn = await asyncpg.connect(_asyncpg_dsn(settings))
    try:
        uuids = [uuid.UUID(i) for i in ids]
        deadline = time.monotonic() + timeout
        query = (
            "SELECT status, created_at, delivered_at FROM api_gateway.notification_statuses "
            "WHERE id = ANY($1::uuid[])"
        )
        while True:
            rows = await conn.fetch(query, uuids)
            pending = [r for r in rows if r["status"] not in TERMINAL]
            if not pending or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
    finally:
        await conn.close()
    delivered = [r for r in rows if r["status"] == "delivered"]
    if not delivered:
        return {"delivered": 0, "failed": len(rows) - len(pending), "pending": len(pending)}
    first = min(r["created_at"] for r in rows)
    last = max(r["delivered_at"] for r in delivered)
    span = max((last - first).total_seconds(), 1e-3)
    latencies = [(r["delivered_at"] - r["created_at"]).total_seconds() * 1000 for r in delivered]
    return {
        "delivered": len(delivered),
        "failed": sum(r["status"] == "failed" for r in rows),
        "pending": len(pending),
        "delivered_per_s": round(len(delivered) / span, 1),
        "p50_ms": percentile(latencies, 50),
        "p95_ms": percentile(latencies, 95),
        "p99_ms": percentile(latencies, 99),
    }


# --- ceilings -------------------------------------------------------------------------------


async def rabbit_ceiling(
    settings: Settings, count: int = 20_000, in_flight: int = 500
) -> dict[str, float]:
    """Confirmed persistent publishes (500 in flight), then consume with manual acks."""
    connection = await aio_pika.connect(settings.rabbitmq_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.declare_queue(f"bench.ceiling.{uuid.uuid4().hex[:8]}", durable=True)
        body = b"x" * 600
        started = time.perf_counter()
        window = asyncio.Semaphore(in_flight)

        async def publish() -> None:
            async with window:
                await channel.default_exchange.publish(
                    aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                    routing_key=queue.name,
                )

        await asyncio.gather(*(publish() for _ in range(count)))
        publish_rate = count / (time.perf_counter() - started)

        consumer_channel = await connection.channel()
        await consumer_channel.set_qos(prefetch_count=200)
        consumer_queue = await consumer_channel.get_queue(queue.name)
        done = asyncio.Event()
        seen = 0
        started = time.perf_counter()

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal seen
            await message.ack()
            seen += 1
            if seen == count:
                done.set()

        await consumer_queue.consume(on_message)
        await asyncio.wait_for(done.wait(), 120)
        consume_rate = count / (time.perf_counter() - started)
        await queue.delete(if_unused=False, if_empty=False)
    finally:
        await connection.close()
    return {"publish_per_s": round(publish_rate), "consume_per_s": round(consume_rate)}


async def bare_fastapi_ceiling(seconds: float = 5.0, concurrency: int = 50) -> float:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "scripts.bench_bare_app", str(port)
    )
    url = f"http://127.0.0.1:{port}/send"
    body = _body("email", str(uuid.uuid4()), 0)
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(100):
                try:
                    async with http.post(url, json=body) as r:
                        if r.status == 202:
                            break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.1)
            count = 0
            stop_at = time.perf_counter() + seconds

            async def worker() -> None:
                nonlocal count
                while time.perf_counter() < stop_at:
                    async with http.post(url, json=body) as r:
                        await r.read()
                        count += 1

            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return round(count / (time.perf_counter() - started))
    finally:
        process.terminate()
        await process.wait()


# --- CPU and memory per service -------------------------------------------------------------


def service_pids() -> dict[str, list[int]]:
    found: dict[str, list[int]] = {s: [] for s in SERVICES}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        for service, module in SERVICES.items():
            if module.encode() in cmdline:
                found[service].append(int(entry.name))
    return found


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            continue
    return total / CLK_TCK


def peak_memory_mb(pids: list[int]) -> float:
    peak = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
        except OSError:
            continue
    return round(peak / 1024, 1)


# --- guard ----------------------------------------------------------------------------------


async def refuse_if_rate_limited(url: str, key: str, rate: float, users: int) -> str | None:
    """A figure capped by our own rate limiter measures the limiter, not the stack."""
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            url.replace("/v1/notifications/send", "/v1/notifications"),
            headers={"Authorization": f"Bearer {key}"},
            params={"limit": 1},
        ) as r,
    ):
        limit = r.headers.get("RateLimit-Limit")
        policy = r.headers.get("RateLimit-Policy", "")
    if limit is None:
        return None
    window = 60.0
    if ";w=" in policy:
        window = float(policy.split(";w=")[1].split(";")[0].split(",")[0])
    per_second = int(limit) / window
    if per_second < rate:
        return (
            f"the API key allows {per_second:.0f} requests/s (RateLimit-Limit {limit} per {window:.0f}s),"
            f" below --rate {rate:.0f}: raise it with `python -m services.api_gateway.api_keys"
            f" create --name bench --rate-limit <per-minute>` and pass --api-key, or raise"
            f" GATEWAY_RATE_LIMIT_PER_KEY (and GATEWAY_RATE_LIMIT_PER_USER against --users), then restart the gateway"
        )
    return None


# --- main -----------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> dict[str, Any]:
    settings = get_settings()
    gateway = args.gateway or settings.api_gateway_url
    url = f"{gateway}/v1/notifications/send"
    key = args.api_key or settings.demo_api_key.get_secret_value()
    refusal = await refuse_if_rate_limited(url, key, args.rate, args.users)
    if refusal:
        raise SystemExit(f"bench: refusing to run: {refusal}")
    users = await ensure_users(settings, args.users)
    shown = ["<key>" if arg == args.api_key else arg for arg in sys.argv[1:]]
    result: dict[str, Any] = {"command": " ".join(["python -m scripts.bench", *shown])}

    pids = service_pids()
    cpu_before = {s: cpu_seconds(p) for s, p in pids.items()}
    gateway_figures, samples = await open_loop(
        url, key, args.rate, args.duration, args.channel, users
    )
    ids = [s.notification_id for s in samples if s.notification_id]
    result["gateway"] = asdict(gateway_figures)
    result["end_to_end"] = (
        {} if args.gateway_only else await end_to_end(settings, ids, timeout=args.duration + 120)
    )
    cpu_after = {s: cpu_seconds(p) for s, p in pids.items()}
    accepted = max(1, len(ids))
    result["services"] = {
        s: {
            "cpu_s_per_1000": round((cpu_after[s] - cpu_before[s]) / accepted * 1000, 2),
            "peak_memory_mb": peak_memory_mb(pids[s]),
            "processes": len(pids[s]),
        }
        for s in SERVICES
    }

    if args.find_max:
        result["max_sustained"] = await find_max(url, key, args.channel, users, args.rate)
    if not args.no_ceilings:
        result["ceilings"] = {
            "rabbitmq": await rabbit_ceiling(settings),
            "bare_fastapi_req_per_s": await bare_fastapi_ceiling(),
        }
    return result


async def find_max(
    url: str, key: str, channel: str, users: list[str], start: float
) -> dict[str, Any]:
    """Raise the rate in steps of 25 % until errors appear or the p99 passes 100 ms."""
    best: dict[str, Any] = {}
    rate = start
    for _ in range(12):
        figures, _ = await open_loop(url, key, rate, 10, channel, users)
        if figures.errors or figures.p99_ms > 100 or figures.accepted_per_s < 0.95 * rate:
            break
        best = asdict(figures)
        rate *= 1.25
    return best


def render_table(result: dict[str, Any]) -> str:
    g, e = result["gateway"], result["end_to_end"]
    lines = [
        f"command: {result['command']}",
        "",
        "gateway  rate/s  sent  accepted/s  p50 ms  p95 ms  p99 ms  errors",
        f"         {g['rate']:<6.0f}  {g['sent']:<4}  {g['accepted_per_s']:<10}  {g['p50_ms']:<6}  {g['p95_ms']:<6}  {g['p99_ms']:<6}  {g['errors'] or '-'}",
        "",
        "end to end  delivered  failed  pending  delivered/s  p50 ms  p95 ms  p99 ms",
        f"            {e.get('delivered', 0):<9}  {e.get('failed', 0):<6}  {e.get('pending', 0):<7}  {e.get('delivered_per_s', '-'):<11}  {e.get('p50_ms', '-'):<6}  {e.get('p95_ms', '-'):<6}  {e.get('p99_ms', '-')}",
    ]
    if result.get("max_sustained"):
        m = result["max_sustained"]
        lines += [
            "",
            f"highest rate without errors (p99 <= 100 ms): {m['rate']:.0f}/s, p99 {m['p99_ms']} ms",
        ]
    if "ceilings" in result:
        c = result["ceilings"]
        rabbit = c["rabbitmq"]
        lines += [
            "",
            f"ceilings   RabbitMQ confirmed publish {rabbit['publish_per_s']}/s, consume+ack {rabbit['consume_per_s']}/s;"
            f" bare FastAPI {c['bare_fastapi_req_per_s']} req/s",
            f"fractions  accepted/s at the offered rate = {g['accepted_per_s'] / c['bare_fastapi_req_per_s']:.0%} of bare FastAPI;"
            f" delivered/s = {e.get('delivered_per_s', 0) / rabbit['consume_per_s']:.0%} of consume ceiling",
        ]
    lines += ["", "service           cpu s / 1000 notifications  peak MB  processes"]
    for name, s in result["services"].items():
        lines.append(
            f"{name:<17} {s['cpu_s_per_1000']:<27} {s['peak_memory_mb']:<8} {s['processes']}"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=300, help="requests per second (open loop)")
    parser.add_argument("--duration", type=float, default=30, help="seconds")
    parser.add_argument("--channel", choices=["email", "push", "mixed"], default="email")
    parser.add_argument("--users", type=int, default=50, help="spread over N users")
    parser.add_argument("--gateway", help="gateway base URL (default: API_GATEWAY_URL)")
    parser.add_argument("--api-key", help="gateway API key (default: DEMO_API_KEY)")
    parser.add_argument(
        "--find-max", action="store_true", help="also search the highest clean rate"
    )
    parser.add_argument("--no-ceilings", action="store_true", help="skip the raw ceiling runs")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--gateway-only",
        action="store_true",
        help="skip waiting for delivery (measure the send path, e.g. with workers stopped)",
    )
    args = parser.parse_args()
    result = asyncio.run(run(args))
    print(json.dumps(result, indent=2, default=str) if args.json else render_table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
