"""The client the gateway and both workers use to fetch template versions.

Versions are immutable, so a pinned version is fetched once per process and kept in a bounded
LRU: a worker renders thousands of messages per minute without a network call per message.
The active version of a (code, channel, locale) changes only when an editor saves or rolls
back, so it is cached for a short TTL (`template_active_ttl_seconds`). Concurrent misses for
the same key share one request, so a burst after a deploy does not stampede the service.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

import httpx
from pydantic import ValidationError

from shared.contracts import TemplateVersion
from shared.errors import DependencyUnavailable, NotFound, ValidationFailed
from shared.http_client import create_http_client, internal_headers
from shared.settings import Settings

# A template code is a slug; the template service enforces the same pattern. Checked here so a
# caller's code can never reshape the internal URL (`../`, `?`, `%2F`).
CODE_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
_CODE = re.compile(CODE_PATTERN)
# 4xx that say nothing about the request: our own key refused (a misconfiguration every send
# shares) or the service shedding load. They stay "unavailable"; any other 4xx is an answer.
_NOT_ANSWERS = frozenset({401, 403, 429})
K = TypeVar("K")
V = TypeVar("V")


class TemplateNotFound(NotFound):
    status_code, code, message = 404, "template_not_found", "no such template"


class TemplateRequestRefused(ValidationFailed):
    """The template service refused this lookup (a 4xx other than 401, 403, 404 and 429): an
    answer about this request alone, never a sign that the service is down."""

    status_code, code, message = (
        422,
        "template_request_refused",
        "the template service refused this template lookup",
    )


class TemplateServiceUnavailable(DependencyUnavailable):
    status_code, code, message = (
        503,
        "template_service_unavailable",
        "the template service is unavailable",
    )


class _LRU(Generic[K, V]):
    """A small bounded LRU; not thread-safe (one event loop owns it)."""

    def __init__(self, max_items: int) -> None:
        self.max_items = max_items
        self._items: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.max_items:
            self._items.popitem(last=False)

    def pop(self, key: K) -> None:
        self._items.pop(key, None)

    def __len__(self) -> int:
        return len(self._items)


VersionKey = tuple[str, str, str | None, int]
ActiveKey = tuple[str, str, str | None]


class TemplateClient:
    """Fetches template versions over the internal API, with the caches described above."""

    def __init__(
        self,
        settings: Settings,
        http: httpx.AsyncClient | None = None,
        *,
        max_versions: int | None = None,
        active_ttl_seconds: float | None = None,
    ) -> None:
        self._owns_http = http is None
        self._http = http or create_http_client(
            settings,
            base_url=settings.template_service_url,
            headers=internal_headers(settings),
        )
        self._versions: _LRU[VersionKey, TemplateVersion] = _LRU(
            max_versions if max_versions is not None else settings.template_cache_max_versions
        )
        self._active: _LRU[ActiveKey, tuple[float, TemplateVersion]] = _LRU(
            max_versions if max_versions is not None else settings.template_cache_max_versions
        )
        self._active_ttl = (
            active_ttl_seconds
            if active_ttl_seconds is not None
            else settings.template_active_ttl_seconds
        )
        self._inflight: dict[tuple[Any, ...], asyncio.Future[TemplateVersion]] = {}
        self.fetches = 0  # requests actually sent; tests and metrics read it

    async def __aenter__(self) -> TemplateClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def get_version(
        self, code: str, channel: str, locale: str | None, version: int
    ) -> TemplateVersion:
        """That exact version (even of a soft-deleted template); cached for the process."""
        _check_code(code)
        key: VersionKey = (code, channel, locale, version)
        cached = self._versions.get(key)
        if cached is not None:
            return cached
        found = await self._single_flight(
            ("version", *key),
            lambda: self._fetch(
                f"/internal/v1/templates/{code}/versions/{version}", channel, locale
            ),
        )
        self._versions.put(key, found)
        return found

    async def get_active(self, code: str, channel: str, locale: str | None) -> TemplateVersion:
        """The active version with locale fallback applied; cached for a short TTL."""
        _check_code(code)
        key: ActiveKey = (code, channel, locale)
        cached = self._active.get(key)
        now = time.monotonic()
        if cached is not None and cached[0] > now:
            return cached[1]
        found = await self._single_flight(
            ("active", *key),
            lambda: self._fetch(f"/internal/v1/templates/{code}/active", channel, locale),
        )
        self._active.put(key, (time.monotonic() + self._active_ttl, found))
        # The active body is an immutable version too: a later pinned fetch needs no request.
        self._versions.put((found.code, found.channel, found.locale, found.version), found)
        return found

    def forget_active(self) -> None:
        """Drop every cached active version (e.g. after an editor saved, in tests)."""
        self._active = _LRU(self._active.max_items)

    async def _single_flight(
        self, key: tuple[Any, ...], fetch: Callable[[], Awaitable[TemplateVersion]]
    ) -> TemplateVersion:
        """One request per key at a time; the request runs as its own task, so a caller that
        is cancelled does not cancel it for the others waiting on it."""
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.ensure_future(fetch())
            self._inflight[key] = task
            task.add_done_callback(lambda done: self._finished(key, done))
        return await asyncio.shield(task)

    def _finished(self, key: tuple[Any, ...], task: asyncio.Future[TemplateVersion]) -> None:
        self._inflight.pop(key, None)
        if not task.cancelled():
            task.exception()  # retrieved, so an error nobody awaited is not logged as lost

    async def _fetch(self, path: str, channel: str, locale: str | None) -> TemplateVersion:
        params = {"channel": channel}
        if locale:
            params["locale"] = locale
        self.fetches += 1
        try:
            response = await self._http.get(path, params=params)
        except httpx.HTTPError as exc:
            raise TemplateServiceUnavailable(
                f"the template service is unreachable ({type(exc).__name__})"
            ) from exc
        if response.status_code == 404:
            raise TemplateNotFound(_message(response) or "no such template")
        if 400 <= response.status_code < 500 and response.status_code not in _NOT_ANSWERS:
            raise TemplateRequestRefused(
                f"the template service refused the lookup: {_message(response) or response.status_code}"
            )
        if response.status_code != 200:
            raise TemplateServiceUnavailable(
                f"the template service answered {response.status_code}"
            )
        try:
            return TemplateVersion.model_validate(response.json()["data"])
        except (ValueError, KeyError, TypeError, ValidationError) as exc:
            raise TemplateServiceUnavailable(
                "the template service sent an unreadable version"
            ) from exc


def _check_code(code: str) -> None:
    if not _CODE.fullmatch(code):
        raise TemplateNotFound(f"{code[:64]!r} is not a template code")


def _message(response: httpx.Response) -> str | None:
    try:
        message = response.json().get("message")
    except ValueError:
        return None
    return message if isinstance(message, str) else None
