"""The gateway's view of the user and template services: cached, bounded, and fail-fast.

Each dependency call goes through `Dependency.call`: the dependency's circuit breaker first
(open -> 503 `dependency_unavailable` with `Retry-After` at once), then a few retries with
exponential backoff and jitter on transient errors only (connection failures, timeouts, 5xx).
A 404 is an answer, not a failure: it neither retries nor counts against the breaker.

Answers are cached in the process for a short TTL: a call out costs far more CPU than the rest
of a send, so the hot path must mostly not call out at all.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import aiohttp
import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from services.api_gateway.breaker import BreakerOpen, CircuitBreaker
from shared.errors import DependencyUnavailable, NotFound
from shared.metrics import DEPENDENCY_FAILURES
from shared.template_client import (
    TemplateClient,
    TemplateNotFound,
    TemplateServiceUnavailable,
    TemplateVersion,
)

logger = logging.getLogger("api_gateway.clients")

K = TypeVar("K")
V = TypeVar("V")
T = TypeVar("T")


class TransientError(Exception):
    """Worth retrying: the dependency may answer next time."""


class TTLCache(Generic[K, V]):
    """A bounded in-process cache with a per-entry deadline (one event loop owns it)."""

    def __init__(self, ttl_seconds: float, max_items: int = 10_000) -> None:
        self.ttl = ttl_seconds
        self.max_items = max_items
        self._items: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def get(self, key: K) -> V | None:
        hit = self._items.get(key)
        if hit is None:
            return None
        if hit[0] <= time.monotonic():
            del self._items[key]
            return None
        return hit[1]

    def put(self, key: K, value: V) -> None:
        if self.ttl <= 0:
            return
        self._items[key] = (time.monotonic() + self.ttl, value)
        self._items.move_to_end(key)
        while len(self._items) > self.max_items:
            self._items.popitem(last=False)

    def clear(self) -> None:
        self._items.clear()


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


# --- user service ----------------------------------------------------------------------


class ContactDevice(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    token: str = Field(min_length=1)
    platform: str = "android"


class QuietHours(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    start: str
    end: str


class ContactPreferences(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    email: bool = True
    push: bool = True
    quiet_hours: QuietHours | None = None


class Contact(BaseModel):
    """`GET /internal/v1/users/{id}/contact` (docs/architecture.md, internal contracts)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    user_id: uuid.UUID
    name: str | None = None
    email: str | None = None
    locale: str | None = None
    timezone: str | None = None
    preferences: ContactPreferences = Field(default_factory=ContactPreferences)
    devices: list[ContactDevice] = Field(default_factory=list)


class UserNotFound(NotFound):
    status_code, code, message = 404, "user_not_found", "no such user"


def create_user_session(
    base_url: str, *, internal_key: str, timeout_seconds: float
) -> aiohttp.ClientSession:
    """The user service's HTTP session. aiohttp rather than the shared httpx factory: this is
    the per-message call of the hot path on a cache miss, and FACTS.md measured httpx far
    behind aiohttp under concurrency (our profile agreed: httpx's pool scan per request)."""
    return aiohttp.ClientSession(
        base_url=base_url,
        headers={"X-Internal-API-Key": internal_key},
        timeout=aiohttp.ClientTimeout(total=timeout_seconds, connect=min(timeout_seconds, 2.0)),
        connector=aiohttp.TCPConnector(limit=100, keepalive_timeout=30),
        raise_for_status=False,
    )


class UserClient:
    """Contacts: an in-process TTL cache in front of the user service, whose internal API
    answers from its own Redis cache (so "cached in Redis" holds without a second copy here,
    which would cost two more Redis round trips per miss)."""

    def __init__(
        self, http: aiohttp.ClientSession, dependency: Dependency, *, ttl_seconds: float
    ) -> None:
        self.http = http
        self.dependency = dependency
        self.cache: TTLCache[uuid.UUID, Contact] = TTLCache(ttl_seconds)

    async def contact(self, user_id: uuid.UUID) -> Contact:
        cached = self.cache.get(user_id)
        if cached is not None:
            return cached
        contact = await self.dependency.call(lambda: self._fetch(user_id))
        self.cache.put(user_id, contact)
        return contact

    async def _fetch(self, user_id: uuid.UUID) -> Contact:
        try:
            async with self.http.get(f"/internal/v1/users/{user_id}/contact") as response:
                status = response.status
                content = await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransientError(type(exc).__name__) from exc
        if status == 404:
            raise UserNotFound()
        if status == 429 or status >= 500:
            raise TransientError(f"answered {status}")
        if status != 200:
            # 401/403/400: our configuration is wrong; retrying cannot help.
            logger.error("user service refused the contact call: %s", status)
            raise DependencyUnavailable(
                "the user service refused the request", headers={"Retry-After": "30"}
            )
        try:
            return Contact.model_validate(orjson.loads(content)["data"])
        except (ValueError, KeyError, TypeError, ValidationError) as exc:
            raise TransientError("unreadable contact") from exc


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
