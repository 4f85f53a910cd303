"""The user service's contacts as the other services read them.

`ContactDirectory` asks `GET /internal/v1/users/{id}/contact` (over aiohttp: this is a
per-message call on a cache miss, and httpx measured far behind aiohttp under concurrency,
docs/measurements.md) and keeps each answer in process for a few seconds. The user service
announces every change of a user's contact (preferences, address, devices, deletion) on a Redis
channel; `listen_for_changes` drops that user's entry at once, on every instance, so an opt-out
holds for new sends within a second. Pub/sub is not durable: after a reconnect the whole cache
is dropped, and the TTL bounds anything missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable

import aiohttp
import orjson
from pydantic import ValidationError
from redis.exceptions import RedisError

from shared.cache import TTLCache
from shared.contracts import Contact
from shared.errors import DependencyUnavailable, NotFound, TransientError
from shared.redis import RedisKeys, redis_from_url
from shared.tracing import aiohttp_trace_configs

logger = logging.getLogger("shared.contacts")

CHANGES_CHANNEL = "contact-changed"
"""The Redis pub/sub channel (under the deployment's key prefix); messages are user ids."""

Guard = Callable[[Callable[[], Awaitable[Contact]]], Awaitable[Contact]]
"""Wraps each fetch (the gateway's breaker and retries); by default the fetch runs as is."""


class UserNotFound(NotFound):
    status_code, code, message = 404, "user_not_found", "no such user"


def create_user_session(
    base_url: str, *, internal_key: str, timeout_seconds: float
) -> aiohttp.ClientSession:
    """An HTTP session for the user service's internal API."""
    return aiohttp.ClientSession(
        base_url=base_url,
        headers={"X-Internal-API-Key": internal_key},
        timeout=aiohttp.ClientTimeout(total=timeout_seconds, connect=min(timeout_seconds, 2.0)),
        connector=aiohttp.TCPConnector(limit=100, keepalive_timeout=30),
        raise_for_status=False,
        trace_configs=aiohttp_trace_configs(),
    )


async def _unguarded(fetch: Callable[[], Awaitable[Contact]]) -> Contact:
    return await fetch()


class ContactDirectory:
    def __init__(
        self, http: aiohttp.ClientSession, *, ttl_seconds: float, guard: Guard = _unguarded
    ) -> None:
        self.http = http
        self.guard = guard
        self.cache: TTLCache[uuid.UUID, Contact] = TTLCache(ttl_seconds)

    async def get(self, user_id: uuid.UUID) -> Contact:
        """The user's contact; `UserNotFound` if there is no such user (any more),
        `TransientError` (or what the guard makes of it) if the user service cannot say."""
        cached = self.cache.get(user_id)
        if cached is not None:
            return cached
        contact = await self.guard(lambda: self._fetch(user_id))
        self.cache.put(user_id, contact)
        return contact

    def forget(self, user_id: uuid.UUID) -> None:
        self.cache.pop(user_id)

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


async def listen_for_changes(
    redis_url: str, keys: RedisKeys, directory: ContactDirectory, *, retry_seconds: float = 1.0
) -> None:
    """Run until cancelled: forget each announced user; forget everyone after a reconnect."""
    channel = keys(CHANGES_CHANNEL)
    while True:
        client = redis_from_url(redis_url, socket_connect_timeout=1.0)
        try:
            async with client.pubsub(ignore_subscribe_messages=True) as pubsub:
                await pubsub.subscribe(channel)
                directory.cache.clear()  # whatever was announced while we were away
                while True:
                    message = await pubsub.get_message(timeout=5.0)
                    if message is not None:
                        _forget(directory, message.get("data"))
        except asyncio.CancelledError:
            raise
        except (RedisError, OSError, TimeoutError) as exc:
            logger.warning("contact change subscription lost (%s); retrying", type(exc).__name__)
        finally:
            with contextlib.suppress(Exception):
                await client.aclose()
        await asyncio.sleep(retry_seconds)


def _forget(directory: ContactDirectory, data: object) -> None:
    try:
        user_id = uuid.UUID(data.decode() if isinstance(data, bytes) else str(data))
    except ValueError:
        return
    directory.forget(user_id)
