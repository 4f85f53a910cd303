"""A small circuit breaker, one per dependency.

Closed: calls go through; `failure_threshold` consecutive failures open it. Open: calls fail at
once (the caller answers 503 with `Retry-After`) until `reset_seconds` have passed. Half-open:
one probe goes through; its success closes the breaker, its failure opens it again. The point
is to stop queueing requests behind a dependency that is down, and to find out cheaply when it
is back. Single event loop, so no locks are needed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from enum import StrEnum

from prometheus_client import Counter, Gauge

BREAKER_STATE = Gauge(
    "notifications_gateway_breaker_open",
    "1 while the circuit breaker of a dependency is open (or half-open), else 0.",
    ["dependency"],
)
BREAKER_REJECTIONS = Counter(
    "notifications_gateway_breaker_rejections_total",
    "Calls refused at once because the dependency's breaker was open.",
    ["dependency"],
)


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class BreakerOpen(Exception):
    """The dependency is considered down; retry after `retry_after` seconds."""

    def __init__(self, name: str, retry_after: float) -> None:
        super().__init__(f"{name} circuit is open")
        self.name = name
        self.retry_after = retry_after

    @property
    def retry_after_header(self) -> str:
        return str(max(1, math.ceil(self.retry_after)))


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int,
        reset_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.failure_threshold = max(1, failure_threshold)
        self.reset_seconds = reset_seconds
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probe_started: float | None = None
        BREAKER_STATE.labels(name).set(0)

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._clock() - self._opened_at >= self.reset_seconds:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def before_call(self) -> None:
        """Raise `BreakerOpen` unless a call may go through now."""
        state = self.state
        if state is BreakerState.CLOSED:
            return
        if state is BreakerState.HALF_OPEN and not self._probe_in_flight():
            self._probe_started = self._clock()
            return
        BREAKER_REJECTIONS.labels(self.name).inc()
        raise BreakerOpen(self.name, self._retry_after())

    def record_success(self) -> None:
        self._failures = 0
        self._probe_started = None
        if self._opened_at is not None:
            self._opened_at = None
            BREAKER_STATE.labels(self.name).set(0)

    def record_failure(self) -> None:
        self._failures += 1
        was_probe = self._probe_started is not None
        self._probe_started = None
        if was_probe or self._failures >= self.failure_threshold:
            self._opened_at = self._clock()
            BREAKER_STATE.labels(self.name).set(1)

    def _probe_in_flight(self) -> bool:
        # A probe that never reported (its caller was cancelled) stops counting after a while,
        # so the breaker cannot stay stuck half-open.
        return self._probe_started is not None and self._clock() - self._probe_started < max(
            self.reset_seconds, 1.0
        )

    def _retry_after(self) -> float:
        if self._opened_at is None:
            return 0.0
        return max(0.0, self.reset_seconds - (self._clock() - self._opened_at))
