"""F2: a user's template must not stall or exhaust the template service.

The review found one `sum` over nested lists holding the whole service for 4 s (its health
answered after 4 s) and a 70-byte `tojson` building 4 MB, growing with the payload until the
process died. Here the same payloads, ten times larger, and two that the renderer's own guards
cannot stop (a C-speed loop and a value that grows within every single-step limit), go to
`POST /api/v1/templates/preview` of a real template service while another task polls its
`/api/v1/health`.

Each must answer 422 within the render budget, and health must keep answering. These are
assertions on timing, on a 2-core machine that other test runs share (load averages above 10
were seen), so the bounds leave room for the scheduler while staying far below what a stalled
service shows (4 s for the payload the review used; the 10x payloads run for tens of seconds):

- the 422 within the 0.5 s budget plus 1 s of margin for HTTP, auth and waiting for a core;
- health: the median probe under 100 ms (what the service answers while it renders), and no
  probe over 1 s (single probes of 350 ms were seen on a loaded machine, render or not);
- and a bound that no amount of load bends: the service process itself spends under 0.5 s of
  CPU during the whole test (health probes included), while the hostile renders cost seconds
  of it (the wordwrap one ~5 s, the unguarded `sum` far more); had one run
  in the service (in a thread or on the loop), that CPU would show here.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from pathlib import Path

import httpx
import pytest

from tests.security.conftest import SecurityStack

BUDGET_SECONDS = 0.5  # TEMPLATE_RENDER_TIMEOUT_SECONDS's default, the render budget
MARGIN_SECONDS = 1.0
HEALTH_MEDIAN_SECONDS = 0.1
HEALTH_MAX_SECONDS = 1.0
SERVICE_CPU_SECONDS = 0.5

PAYLOADS = {
    # F2's `sum`, 10x: 10,000 references to one 10,000-item list, concatenated (quadratic).
    "sum over nested lists": "{{ ([range(10000)|list] * 10000)|sum(start=[])|length }}",
    # F2's `tojson`, 10x: a ~40 MB JSON text from a 60-byte template.
    "tojson of a shared list": "{{ ([range(9999)|list] * 999)|tojson|length }}",
    # Beyond the guards: textwrap loops in Python inside one filter call (~5 s here).
    "a loop no guard reaches": "{{ ('x' * 250000)|wordwrap(1)|length }}",
    # Beyond the guards: 1,000 strings of 250,000 characters, each within the size limit.
    "memory in allowed steps": "{{ range(1000)|map('center', 250000)|list|length }}",
}


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


async def _probe_health(client: httpx.AsyncClient, stop: asyncio.Event) -> list[float]:
    latencies: list[float] = []
    while not stop.is_set():
        started = time.monotonic()
        response = await client.get("/api/v1/health")
        latencies.append(time.monotonic() - started)
        assert response.status_code == 200, response.text
        await asyncio.sleep(0.01)
    return latencies


@pytest.mark.parametrize("source", PAYLOADS.values(), ids=PAYLOADS.keys())
async def test_a_hostile_preview_is_refused_in_budget_while_health_answers(
    security_stack: SecurityStack, source: str
) -> None:
    headers = await security_stack.admin_headers()
    pid = security_stack.stack.processes["template_service"].pid
    rss_before, cpu_before = _peak_rss_kib(pid), _cpu_seconds(pid)
    base = security_stack.url("template_service")
    async with (
        httpx.AsyncClient(base_url=base, timeout=10) as attacker,
        httpx.AsyncClient(base_url=base, timeout=10) as prober,
    ):
        assert (await prober.get("/api/v1/health")).status_code == 200  # a warm connection
        stop = asyncio.Event()
        probing = asyncio.create_task(_probe_health(prober, stop))
        await asyncio.sleep(0.05)  # a few probes before, for a baseline
        started = time.monotonic()
        response = await attacker.post(
            "/api/v1/templates/preview",
            json={"channel": "email", "subject": "s", "text_body": source, "variables": {}},
            headers=headers,
        )
        elapsed = time.monotonic() - started
        await asyncio.sleep(0.2)  # and a few after, while the pool replaces a killed child
        stop.set()
        latencies = await probing
    cpu = _cpu_seconds(pid) - cpu_before

    assert response.status_code == 422, response.text
    assert response.json()["error"] == "template_render_failed"
    assert elapsed < BUDGET_SECONDS + MARGIN_SECONDS, elapsed
    assert len(latencies) >= 3, latencies
    assert statistics.median(latencies) < HEALTH_MEDIAN_SECONDS, latencies
    assert max(latencies) < HEALTH_MAX_SECONDS, latencies
    # The service process itself neither ran the render nor held its value.
    assert cpu < SERVICE_CPU_SECONDS, cpu
    assert _peak_rss_kib(pid) - rss_before < 20 * 1024
