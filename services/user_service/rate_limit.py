"""Login throttling and registration limits, in Redis.

The client address is the peer uvicorn reports, which honours forwarded headers only from the
proxies in `FORWARDED_ALLOW_IPS`; a client cannot pick a new address per try.

Logins are held back in three independent ways, each answering 429 `rate_limited` with
`Retry-After`:
- per address, every attempt counts (`LOGIN_RATE_PER_ADDRESS` a minute): a flood from one
  place is cut off whatever it tries;
- per address, failures count (`LOGIN_FAILURES_PER_ADDRESS` a window): one place cannot guess
  much, across any number of accounts;
- per account, failures buy growing delays rather than a lockout: the first
  `LOGIN_ACCOUNT_FREE_FAILURES` are free, then each one doubles the wait before the next
  attempt (1 s, 2 s, 4 s ...) up to `LOGIN_ACCOUNT_MAX_DELAY_SECONDS`. Guessing from many
  addresses stays slow, and nobody is locked out for long. The delay never applies to an
  address the owner logged in from in the last 30 days, so a guesser elsewhere cannot keep
  the owner out at all.
A success clears the account's failures. Registrations are limited per address
(`REGISTRATIONS_PER_ADDRESS_PER_HOUR`): each costs an Argon2 hash.

Emails and addresses are hashed in the keys: keys are visible to anyone with Redis access and
must not list who tried to log in. If Redis is down the limiter fails open: an unavailable
limiter must not lock everyone out, and Argon2's cost still slows guessing.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

from services.user_service.settings import UserServiceSettings
from shared.errors import RateLimited
from shared.redis import RedisKeys

logger = logging.getLogger("user_service.rate_limit")

KNOWN_ADDRESS_SECONDS = 30 * 24 * 3600
_HOUR = 3600

# KEYS: attempts, address failures, account, known address.
# ARGV: attempts allowed a minute, failures allowed per address.
# Returns {reason, seconds}: 0 go ahead, 1 attempts, 2 address failures, 3 account delay.
_CHECK = """
local attempts = redis.call('INCR', KEYS[1])
if attempts == 1 then
    redis.call('EXPIRE', KEYS[1], 60)
end
if attempts > tonumber(ARGV[1]) then
    return {1, redis.call('TTL', KEYS[1])}
end
if tonumber(redis.call('GET', KEYS[2]) or '0') >= tonumber(ARGV[2]) then
    return {2, redis.call('TTL', KEYS[2])}
end
if redis.call('EXISTS', KEYS[4]) == 0 then
    local now = redis.call('TIME')
    local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
    local until_ms = tonumber(redis.call('HGET', KEYS[3], 'until') or '0')
    if until_ms > now_ms then
        return {3, math.ceil((until_ms - now_ms) / 1000)}
    end
end
return {0, 0}
"""

# KEYS: address failures, account. ARGV: failure window, free failures, max delay (s).
# Both counts are forgotten a window after the last failure. Returns the delay set (s).
_FAILED = """
local failures = redis.call('INCR', KEYS[1])
if failures == 1 then
    redis.call('EXPIRE', KEYS[1], ARGV[1])
end
local count = redis.call('HINCRBY', KEYS[2], 'failures', 1)
local delay = 0
local free = tonumber(ARGV[2])
if count > free then
    delay = math.min(2 ^ math.min(count - free - 1, 30), tonumber(ARGV[3]))
    local now = redis.call('TIME')
    local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
    redis.call('HSET', KEYS[2], 'until', now_ms + delay * 1000)
end
redis.call('EXPIRE', KEYS[2], ARGV[1])
return delay
"""

# INCR, and start the window only on the first hit; returns {count, seconds left}.
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
_REFUSALS = {
    1: "too many login attempts from this address; try again later",
    2: "too many failed logins from this address; try again later",
    3: "too many failed logins for this account; try again shortly",
}


def _digest(*parts: str) -> str:
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


def _normal(email: str) -> str:
    return email.strip().lower()


def _refuse(message: str, seconds: int) -> RateLimited:
    return RateLimited(message, code="rate_limited", headers={"Retry-After": str(max(seconds, 1))})


@dataclass
class LoginThrottle:
    redis: Redis
    key_prefix: str
    settings: UserServiceSettings

    def __post_init__(self) -> None:
        self._keys = RedisKeys(self.key_prefix)
        self._check = self.redis.register_script(_CHECK)
        self._failed = self.redis.register_script(_FAILED)
        self._hit = self.redis.register_script(_HIT)

    # One key per concern; the email and address only ever appear hashed.
    def attempts_key(self, address: str) -> str:
        return self._keys("login_attempts", _digest(address))

    def address_failures_key(self, address: str) -> str:
        return self._keys("login_failures", _digest(address))

    def account_key(self, email: str) -> str:
        return self._keys("login_account", _digest(_normal(email)))

    def known_key(self, email: str, address: str) -> str:
        return self._keys("login_known", _digest(_normal(email), address))

    def registrations_key(self, address: str) -> str:
        return self._keys("registrations", _digest(address))

    async def before_login(self, email: str, address: str) -> None:
        """Count this attempt; 429 if the address or the account must wait."""
        keys = [
            self.attempts_key(address),
            self.address_failures_key(address),
            self.account_key(email),
            self.known_key(email, address),
        ]
        limits = [self.settings.login_rate_per_address, self.settings.login_failures_per_address]
        try:
            reason, seconds = await self._check(keys=keys, args=limits)
        except _REDIS_DOWN as exc:
            logger.warning("login throttle unavailable, allowing: %s", type(exc).__name__)
            return
        if int(reason):
            raise _refuse(_REFUSALS[int(reason)], int(seconds))

    async def login_failed(self, email: str, address: str) -> None:
        settings = self.settings
        try:
            await self._failed(
                keys=[self.address_failures_key(address), self.account_key(email)],
                args=[
                    settings.login_failure_window_seconds,
                    settings.login_account_free_failures,
                    settings.login_account_max_delay_seconds,
                ],
            )
        except _REDIS_DOWN as exc:
            logger.warning("login failure not counted: %s", type(exc).__name__)

    async def login_succeeded(self, email: str, address: str) -> None:
        """Clear the account's failures and remember the address as the owner's."""
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.delete(self.account_key(email))
                pipe.set(self.known_key(email, address), b"1", ex=KNOWN_ADDRESS_SECONDS)
                await pipe.execute()
        except _REDIS_DOWN as exc:
            logger.warning("login throttle reset failed: %s", type(exc).__name__)

    async def before_registration(self, address: str) -> None:
        """Count this registration; 429 once the address has used its hour's budget."""
        try:
            count, ttl = await self._hit(keys=[self.registrations_key(address)], args=[_HOUR])
        except _REDIS_DOWN as exc:
            logger.warning("registration limit unavailable, allowing: %s", type(exc).__name__)
            return
        if int(count) > self.settings.registrations_per_address_per_hour:
            raise _refuse("too many registrations from this address; try again later", int(ttl))
