"""Login throttling per (email, client IP), in Redis.

Every attempt counts and a success clears the count, so a password guesser gets
`login_max_attempts` tries per window while a user who logs in often is never blocked. The
window starts at the first attempt and is not re-armed by later ones (re-arming it would keep
a busy client blocked). The email is hashed in the key: keys are visible to anyone
with Redis access and must not list who tried to log in.

If Redis is down the limiter fails open: an unavailable limiter must not lock everyone out, and
Argon2's cost still slows guessing.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

from shared.errors import RateLimited
from shared.redis import RedisKeys

logger = logging.getLogger("user_service.rate_limit")

# INCR, and start the window only on the first attempt; returns (count, seconds left).
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
class LoginLimiter:
    redis: Redis
    key_prefix: str
    max_attempts: int
    window_seconds: int

    def __post_init__(self) -> None:
        self._keys = RedisKeys(self.key_prefix)
        self._hit = self.redis.register_script(_HIT)

    def key(self, email: str, client_ip: str) -> str:
        digest = hashlib.sha256(f"{email.strip().lower()}|{client_ip}".encode()).hexdigest()
        return self._keys("login_attempts", digest[:32])

    async def check(self, email: str, client_ip: str) -> None:
        """Count this attempt; raise 429 `rate_limited` once the window's budget is spent."""
        try:
            count, ttl = await self._hit(
                keys=[self.key(email, client_ip)], args=[self.window_seconds]
            )
        except _REDIS_DOWN as exc:
            logger.warning("login rate limit unavailable, allowing: %s", type(exc).__name__)
            return
        if int(count) > self.max_attempts:
            retry_after = max(int(ttl), 1)
            raise RateLimited(
                "too many login attempts; try again later",
                code="rate_limited",
                headers={"Retry-After": str(retry_after)},
            )

    async def reset(self, email: str, client_ip: str) -> None:
        try:
            await self.redis.delete(self.key(email, client_ip))
        except _REDIS_DOWN as exc:
            logger.warning("login rate limit reset failed: %s", type(exc).__name__)
