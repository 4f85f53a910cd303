"""Per-user limit on renders of user-supplied input (preview, render), in Redis.

Each render takes a child process for up to the render timeout, so one user looping on
preview could keep every child busy. A fixed one-minute window per user is enough here: it is
a protection, not a quota. The user id is hashed in the key (keys are visible to anyone with
Redis access). If Redis is down the limiter fails open, as the gateway's does: the children's
limits still hold.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

from shared.errors import RateLimited
from shared.redis import RedisKeys

logger = logging.getLogger("template_service.rate_limit")

WINDOW_SECONDS = 60

# INCR, and start the window only on the first hit; returns (count, seconds left).
_HIT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then
    redis.call('EXPIRE', KEYS[1], ARGV[1])
end
local ttl = redis.call('TTL', KEYS[1])
if ttl < 0 then
    redis.call('EXPIRE', KEYS[1], ARGV[1])
    ttl = tonumber(ARGV[1])
end
return {count, ttl}
"""

_REDIS_DOWN = (RedisError, OSError, TimeoutError)


@dataclass
class RenderLimiter:
    redis: Redis
    key_prefix: str
    per_minute: int

    def __post_init__(self) -> None:
        self._keys = RedisKeys(self.key_prefix)
        self._hit = self.redis.register_script(_HIT)

    def key(self, user_id: uuid.UUID) -> str:
        return self._keys("template_renders", hashlib.sha256(user_id.bytes).hexdigest()[:32])

    async def check(self, user_id: uuid.UUID) -> None:
        """Count one render; 429 `rate_limited` with `Retry-After` once the minute is spent."""
        try:
            count, ttl = await self._hit(keys=[self.key(user_id)], args=[WINDOW_SECONDS])
        except _REDIS_DOWN as exc:
            logger.warning("render rate limit unavailable, allowing: %s", type(exc).__name__)
            return
        if int(count) > self.per_minute:
            raise RateLimited(
                "too many renders; try again later",
                headers={"Retry-After": str(max(int(ttl), 1))},
            )
