"""The console's overview: live rates, failures, queue depths and breaker states, as charts.

The figures come from the metrics the services already export, so the console shows what
Prometheus and the Grafana dashboard show: the gateway's own registry (accepted, breakers)
and each worker's `/metrics` (delivered, dead-lettered by reason, queue depths). A sample is
taken when a page asks for one (at most once a second, whoever asks), kept for `WINDOW_SECONDS`,
and rates are differences between consecutive samples. Nobody watching costs nothing.

Accepted counts are this gateway process's: with several gateway replicas, use the Grafana
dashboard for the fleet-wide figure (`deploy/grafana/`).

Charts are SVG computed here and drawn by the template: no chart library, no request leaving
the machine. Lines differ by dash pattern as well as colour, and every chart has a table.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import httpx
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from shared.http_client import create_http_client
from shared.messaging.message import Channel
from shared.settings import Settings

WINDOW_SECONDS = 300.0
MIN_INTERVAL_SECONDS = 1.0
CHANNELS = tuple(c.value for c in Channel)

Labels = dict[str, str]


@dataclass(frozen=True)
class Sample:
    at: float
    accepted: dict[str, float]
    delivered: dict[str, float]
    dead_lettered: dict[str, float]
    queues: dict[str, float]
    breakers: dict[str, float]
    unreachable: tuple[str, ...]


def _samples(families: Iterable[Any]) -> list[tuple[str, Labels, float]]:
    return [(s.name, dict(s.labels), float(s.value)) for f in families for s in f.samples]


def summarise(
    at: float, series: list[tuple[str, Labels, float]], unreachable: tuple[str, ...] = ()
) -> Sample:
    """One sample from raw series (gateway and workers together)."""
    accepted = dict.fromkeys(CHANNELS, 0.0)
    delivered = dict.fromkeys(CHANNELS, 0.0)
    dead_lettered: dict[str, float] = {}
    queues: dict[str, float] = {}
    breakers: dict[str, float] = {}
    for name, labels, value in series:
        if name == "notifications_gateway_accepted_total":
            channel = labels.get("notification_type", "")
            accepted[channel] = accepted.get(channel, 0.0) + value
        elif (
            name == "notifications_messages_consumed_total" and labels.get("outcome") == "delivered"
        ):
            channel = labels.get("queue", "").removesuffix(".queue")
            delivered[channel] = delivered.get(channel, 0.0) + value
        elif name == "notifications_dead_lettered_total":
            reason = labels.get("reason", "unknown")
            dead_lettered[reason] = dead_lettered.get(reason, 0.0) + value
        elif name == "notifications_queue_messages":
            queue = labels.get("queue", "")
            # failed.queue is reported by both workers: they see the same queue.
            queues[queue] = max(queues.get(queue, 0.0), value)
        elif name == "notifications_gateway_breaker_open":
            breakers[labels.get("dependency", "")] = value
    return Sample(at, accepted, delivered, dead_lettered, queues, breakers, unreachable)


# --- chart geometry ------------------------------------------------------------------------

WIDTH, HEIGHT, LEFT, BOTTOM, TOP, RIGHT = 640, 220, 56, 28, 12, 12
STYLES = {
    "email": {"colour": "#1f5fbf", "dash": ""},
    "push": {"colour": "#b3261e", "dash": "6 4"},
}


@dataclass
class Line:
    label: str
    points: str
    colour: str
    dash: str
    latest: float


@dataclass
class LineChart:
    title: str
    unit: str
    lines: list[Line]
    y_max: float
    ticks: list[tuple[float, str]]
    since: str
    rows: list[tuple[str, list[float]]] = field(default_factory=list)
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    bottom: int = BOTTOM
    top: int = TOP
    right: int = RIGHT


@dataclass
class Bar:
    label: str
    value: float
    width: float


@dataclass
class BarChart:
    title: str
    unit: str
    bars: list[Bar]
    width: int = WIDTH
    left: int = 190


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    magnitude = 10 ** len(str(int(value)))
    for step in (0.1, 0.2, 0.25, 0.5, 1.0):
        if value <= magnitude * step:
            return magnitude * step
    return float(magnitude)


def _label(value: float) -> str:
    return f"{value:.0f}" if value >= 10 or value == int(value) else f"{value:.1f}"


def _ago(seconds: float) -> str:
    return f"-{seconds / 60:.0f} min" if seconds >= 120 else f"-{seconds:.0f} s"


def line_chart(
    title: str,
    unit: str,
    times: list[float],
    series: dict[str, list[float]],
    now: float,
    span: float = WINDOW_SECONDS,
) -> LineChart:
    """Lines over the last `span` seconds (the x axis ends at `now`)."""
    y_max = _nice_max(max((v for values in series.values() for v in values), default=0.0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    lines = []
    for label, values in series.items():
        coords = [
            f"{LEFT + plot_w * (1 - min(1.0, (now - t) / span)):.1f},"
            f"{TOP + plot_h * (1 - v / y_max):.1f}"
            for t, v in zip(times, values, strict=True)
        ]
        style = STYLES.get(label, {"colour": "#333333", "dash": "2 2"})
        lines.append(
            Line(
                label, " ".join(coords), style["colour"], style["dash"], values[-1] if values else 0
            )
        )
    ticks = [(TOP + plot_h * (1 - f), _label(y_max * f)) for f in (0.0, 0.5, 1.0)]
    rows = [
        (f"-{now - t:.0f} s", [series[label][i] for label in series]) for i, t in enumerate(times)
    ][-10:]
    return LineChart(title, unit, lines, y_max, ticks, _ago(span), rows)


def bar_chart(title: str, unit: str, values: dict[str, float]) -> BarChart:
    top = _nice_max(max(values.values(), default=0.0))
    span = WIDTH - 190 - 60
    bars = [Bar(label, value, span * value / top) for label, value in sorted(values.items())]
    return BarChart(title, unit, bars)


# --- sampling --------------------------------------------------------------------------------


class Overview:
    def __init__(self, settings: Settings) -> None:
        self._workers = {
            "email_service": settings.email_service_url,
            "push_service": settings.push_service_url,
        }
        self._http: httpx.AsyncClient = create_http_client(settings, timeout_seconds=2.0)
        self._samples: deque[Sample] = deque()
        self._lock = asyncio.Lock()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def refresh(self) -> None:
        """Take a sample unless one is younger than `MIN_INTERVAL_SECONDS`."""
        async with self._lock:
            now = time.time()
            if self._samples and now - self._samples[-1].at < MIN_INTERVAL_SECONDS:
                return
            series = _samples(REGISTRY.collect())
            results = await asyncio.gather(*(self._scrape(url) for url in self._workers.values()))
            unreachable = tuple(
                name for name, got in zip(self._workers, results, strict=True) if got is None
            )
            for got in results:
                series += got or []
            self._samples.append(summarise(now, series, unreachable))
            while self._samples and now - self._samples[0].at > WINDOW_SECONDS:
                self._samples.popleft()

    async def _scrape(self, base_url: str) -> list[tuple[str, Labels, float]] | None:
        try:
            response = await self._http.get(f"{base_url}/metrics")
            response.raise_for_status()
        except httpx.HTTPError:
            return None
        return _samples(text_string_to_metric_families(response.text))

    def view(self) -> dict[str, Any]:
        """What the template draws: charts over the window and the latest states."""
        return build_view(list(self._samples), time.time())


def _rates(samples: list[Sample], field_name: str) -> tuple[list[float], dict[str, list[float]]]:
    times: list[float] = []
    series: dict[str, list[float]] = {c: [] for c in CHANNELS}
    for before, after in pairwise(samples):
        elapsed = after.at - before.at
        times.append(after.at)
        for channel in CHANNELS:
            delta = getattr(after, field_name)[channel] - getattr(before, field_name)[channel]
            # A restarted process starts its counters again: count from zero, never negative.
            increase = delta if delta >= 0 else getattr(after, field_name)[channel]
            series[channel].append(increase / elapsed if elapsed > 0 else 0.0)
    return times, series


def build_view(samples: list[Sample], now: float) -> dict[str, Any]:
    latest = samples[-1] if samples else None
    # The x axis spans what has been watched so far (at least a minute), up to the window.
    span = min(WINDOW_SECONDS, max(60.0, now - samples[0].at)) if samples else WINDOW_SECONDS
    accepted_t, accepted = _rates(samples, "accepted")
    delivered_t, delivered = _rates(samples, "delivered")
    failures: dict[str, float] = {}
    if latest is not None:
        first = samples[0]
        for reason, value in latest.dead_lettered.items():
            increase = value - first.dead_lettered.get(reason, 0.0)
            failures[reason] = increase if increase >= 0 else value
    queues = latest.queues if latest else {}
    return {
        "has_data": len(samples) >= 2,
        "accepted": line_chart("Accepted per second", "/s", accepted_t, accepted, now, span),
        "delivered": line_chart("Delivered per second", "/s", delivered_t, delivered, now, span),
        "failures": bar_chart(
            f"Dead-lettered by reason, last {int(WINDOW_SECONDS // 60)} min", "", failures
        ),
        "queues": bar_chart(
            "Messages waiting per queue",
            "",
            {q: v for q, v in queues.items() if v > 0 or ".retry." not in q},
        ),
        "breakers": sorted((latest.breakers if latest else {}).items()),
        "unreachable": latest.unreachable if latest else (),
    }
