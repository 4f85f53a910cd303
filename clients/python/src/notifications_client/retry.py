"""When to try a call again, and how long to wait first.

Retried: connection failures (the request may or may not have arrived: every mutating call
carries an idempotency key, so a second arrival is a replay, not a second notification),
429 `rate_limited`, 409 `request_in_progress` (our own earlier attempt is still running) and
502/503/504. The wait is the gateway's `Retry-After` (or `RateLimit-Reset`) when it gives one,
else exponential backoff with full jitter, so many clients recovering together do not arrive in
step. The whole call, waits included, stays within `total_timeout`: a wait that would end past
it is not started, and the last error is raised instead.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from notifications_client.errors import ConnectionFailed, NotificationsError
from notifications_client.models import RateLimit


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    total_timeout: float = 30.0
    base_delay: float = 0.25
    max_delay: float = 8.0
    retry_statuses: frozenset[int] = field(default=frozenset({429, 502, 503, 504}))

    @classmethod
    def never(cls) -> RetryPolicy:
        """One attempt, no retries: errors reach the caller at once."""
        return cls(max_attempts=1)

    def backoff(self, attempt: int, rng: Callable[[], float] = random.random) -> float:
        """Full jitter: uniform in [0, min(max_delay, base_delay * 2^(attempt-1))]."""
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** (attempt - 1))
        return rng() * ceiling

    def should_retry(self, error: NotificationsError) -> bool:
        if isinstance(error, ConnectionFailed):
            return True
        if error.status_code == 409:
            return error.code == "request_in_progress"
        return error.status_code in self.retry_statuses


@dataclass(frozen=True)
class RetryEvent:
    """What `on_retry` hooks receive before each wait."""

    attempt: int  # the attempt that failed, from 1
    delay: float  # seconds until the next one
    error: NotificationsError


class Attempts:
    """The retry state of one call: counts attempts, keeps the deadline, picks each wait."""

    def __init__(
        self,
        policy: RetryPolicy,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.policy = policy
        self.clock = clock
        self.rng = rng
        self.deadline = clock() + policy.total_timeout
        self.count = 0

    def start(self) -> None:
        self.count += 1

    def remaining(self) -> float:
        return max(0.0, self.deadline - self.clock())

    def next_delay(self, error: NotificationsError) -> float | None:
        """Seconds to wait before the next attempt, or None: give up and raise `error`."""
        error.attempts = self.count
        if self.count >= self.policy.max_attempts or not self.policy.should_retry(error):
            return None
        if error.retry_after is not None:
            # The server's figure, plus a little jitter so waiting clients do not return at once.
            delay = error.retry_after + self.rng() * self.policy.base_delay
        else:
            delay = self.policy.backoff(self.count, self.rng)
        if delay >= self.remaining():
            return None
        return delay


def _seconds(value: str | None) -> float | None:
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def retry_after(status_code: int, headers: Mapping[str, str]) -> float | None:
    """`Retry-After` (seconds or an HTTP date); on a 429 without it, `RateLimit-Reset`."""
    delay = _seconds(headers.get("retry-after"))
    if delay is None and status_code == 429:
        delay = _seconds(headers.get("ratelimit-reset"))
    return delay


def rate_limit(headers: Mapping[str, str]) -> RateLimit | None:
    try:
        return RateLimit(
            limit=int(headers["ratelimit-limit"]),
            remaining=int(headers["ratelimit-remaining"]),
            reset_seconds=float(headers["ratelimit-reset"]),
        )
    except (KeyError, ValueError):
        return None
