"""The Redis cache of contact records, the one thing the gateway asks per notification.

Key: `RedisKeys(prefix)("user_contact", user_id)`; value: the JSON of the contact (exactly the
`data` of `GET /internal/v1/users/{id}/contact`), so a hit is served without parsing.

Invalidation must win against a concurrent miss that read the database just before a write
committed; otherwise that miss would put the old record back for a whole TTL. Each write bumps
a per-user generation and deletes the record; a miss notes the generation before it reads the
database and stores its result only if the generation is still the same (one Lua call).

Redis is an optimisation here, never a dependency of correctness: if it is down, reads go to
the database and writes still commit (the TTL bounds how long a lost invalidation can last).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable

from prometheus_client import Counter
from redis.asyncio import Redis
from redis.exceptions import RedisError

from shared.contacts import CHANGES_CHANNEL
from shared.redis import RedisKeys

logger = logging.getLogger("user_service.cache")

CONTACT_CACHE = Counter(
    "notifications_user_contact_cache_total",
    "Contact lookups by cache outcome (hit, miss, error).",
    ["outcome"],
)

# The generation outlives any database read in flight by a wide margin.
_GENERATION_TTL_SECONDS = 3600

_SET_IF_SAME_GENERATION = """
if (redis.call('GET', KEYS[2]) or '0') == ARGV[1] then
    redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
    return 1
end
return 0
"""

_REDIS_DOWN = (RedisError, OSError, TimeoutError)


class ContactCache:
    def __init__(self, redis: Redis, key_prefix: str, ttl_seconds: int) -> None:
        self.redis = redis
        self.keys = RedisKeys(key_prefix)
        self.ttl_seconds = ttl_seconds
        self._set_if_same = redis.register_script(_SET_IF_SAME_GENERATION)

    def key(self, user_id: uuid.UUID) -> str:
        return self.keys("user_contact", user_id)

    def _generation_key(self, user_id: uuid.UUID) -> str:
        return self.keys("user_contact_generation", user_id)

    async def get_or_load(
        self, user_id: uuid.UUID, load: Callable[[], Awaitable[bytes | None]]
    ) -> bytes | None:
        """The cached JSON, or `load()`'s (stored for next time). `None` when no such user."""
        key, generation_key = self.key(user_id), self._generation_key(user_id)
        try:
            cached, generation = await self.redis.mget(key, generation_key)
        except _REDIS_DOWN as exc:
            CONTACT_CACHE.labels("error").inc()
            logger.warning("contact cache read failed, using the database: %s", type(exc).__name__)
            return await load()
        if cached is not None:
            CONTACT_CACHE.labels("hit").inc()
            return cached if isinstance(cached, bytes) else cached.encode()
        CONTACT_CACHE.labels("miss").inc()
        value = await load()
        if value is not None:
            seen = generation.decode() if isinstance(generation, bytes) else str(generation or 0)
            try:
                await self._set_if_same(
                    keys=[key, generation_key], args=[seen, value, self.ttl_seconds]
                )
            except _REDIS_DOWN as exc:
                logger.warning("contact cache write failed: %s", type(exc).__name__)
        return value

    async def invalidate(self, user_ids: Iterable[uuid.UUID]) -> None:
        """Call after the change committed."""
        ids = list(dict.fromkeys(user_ids))
        if not ids:
            return
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for user_id in ids:
                    pipe.incr(self._generation_key(user_id))
                    pipe.expire(self._generation_key(user_id), _GENERATION_TTL_SECONDS)
                    pipe.delete(self.key(user_id))
                    # Readers' in-process caches (gateway, workers) drop the user at once.
                    pipe.publish(self.keys(CHANGES_CHANNEL), str(user_id))
                await pipe.execute()
        except _REDIS_DOWN as exc:
            logger.warning(
                "contact cache invalidation failed (stale for up to %ss): %s",
                self.ttl_seconds,
                type(exc).__name__,
            )
