"""The gateway's guard on the user and template services: cached, bounded, and fail-fast.

Each dependency call goes through `Dependency.call`: the dependency's circuit breaker first
(open -> 503 `dependency_unavailable` with `Retry-After` at once), then a few retries with
exponential backoff and jitter on transient errors only (connection failures, timeouts, 5xx).
A 404 is an answer, not a failure: it neither retries nor counts against the breaker.

Answers are cached in the process for a short TTL (contacts: `shared.contacts`, invalidated
when the user service announces a change): a call out costs far more CPU than the rest of a
send, so the hot path must mostly not call out at all.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from services.api_gateway.breaker import BreakerOpen, CircuitBreaker
from shared.cache import TTLCache
from shared.contracts import TemplateVersion
from shared.errors import DependencyUnavailable, TransientError
from shared.metrics import DEPENDENCY_FAILURES
from shared.template_client import (
    TemplateClient,
    TemplateNotFound,
    TemplateServiceUnavailable,
)

logger = logging.getLogger("api_gateway.clients")

T = TypeVar("T")


class Dependency:
    """A remote service guarded by a breaker, with retries on transient errors."""

    def __init__(
        self, name: str, breaker: CircuitBreaker, *, retries: int, backoff_ms: int
    ) -> None:
        self.name = name
        self.breaker = breaker
        self.retries = retries
        self.backoff_seconds = backoff_ms / 1000
        DEPENDENCY_FAILURES.labels("api_gateway", name)  # a zero series from the start

    async def call(self, fetch: Callable[[], Awaitable[T]]) -> T:
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(1 + self.retries),
                wait=wait_exponential_jitter(
                    multiplier=self.backoff_seconds,
                    jitter=self.backoff_seconds,
                    max=self.backoff_seconds * 8,
                ),
                retry=retry_if_exception_type(TransientError),
                reraise=True,
            ):
                with attempt:
                    return await self._once(fetch)
        except BreakerOpen as exc:
            raise DependencyUnavailable(
                f"{self.name} is unavailable; try again later",
                headers={"Retry-After": exc.retry_after_header},
            ) from exc
        except TransientError as exc:
            raise DependencyUnavailable(
                f"{self.name} is unavailable ({exc}); try again later",
                headers={"Retry-After": "1"},
            ) from exc
        raise AssertionError("unreachable: tenacity either returns or raises")

    async def _once(self, fetch: Callable[[], Awaitable[T]]) -> T:
        self.breaker.before_call()
        try:
            result = await fetch()
        except TransientError:
            self.breaker.record_failure()
            DEPENDENCY_FAILURES.labels("api_gateway", self.name).inc()
            raise
        except BaseException:
            # An answer we do not retry (404, 401...) still proves the service is up; a
            # cancellation tells us nothing, but must not leave a half-open probe hanging.
            self.breaker.record_success()
            raise
        self.breaker.record_success()
        return result


# --- template service ------------------------------------------------------------------


class TemplateLookup:
    """Active template versions through `shared.template_client`, behind the breaker."""

    def __init__(self, client: TemplateClient, dependency: Dependency, *, ttl_seconds: float):
        self.client = client
        self.dependency = dependency
        self.cache: TTLCache[tuple[str, str, str | None], TemplateVersion] = TTLCache(ttl_seconds)

    async def active(self, code: str, channel: str, locale: str | None) -> TemplateVersion:
        key = (code, channel, locale)
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        version = await self.dependency.call(lambda: self._fetch(code, channel, locale))
        self.cache.put(key, version)
        return version

    async def _fetch(self, code: str, channel: str, locale: str | None) -> TemplateVersion:
        try:
            return await self.client.get_active(code, channel, locale)
        except TemplateNotFound:
            raise
        except TemplateServiceUnavailable as exc:
            raise TransientError(exc.message) from exc
