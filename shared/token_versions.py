"""Per-user token versions: how one revocation reaches every service within a second.

Every access token carries `ver`, its user's token version when it was issued. A password
change, an account deletion or an admin's revoke raises the version in the user service's
database (deletion removes the user), so every token issued before it stops matching.

Checking the database on each request would put the user service on every request's path.
Instead the user service writes the version to Redis, `<prefix>token_version:<user_id>`, after
the change commits, and any service compares the token's `ver` with that key (one GET), keeping
the answer in the process for `TOKEN_VERSION_CACHE_SECONDS`. When the key is missing (expired,
evicted, or Redis is down) the service asks the user service's internal API, which reads the
database and writes the key back. So Redis is a cache of the database, never the authority.

Races: a write-back (`remember`, SET NX) never replaces a value, and a revocation (`announce`)
only raises it, so a lookup that read the database just before a revocation cannot undo it.
The key lives a little longer than an access token; after that no token it could refuse is
still valid anyway. If Redis cannot be written at the moment of a revocation the old key may
live on until it expires (at most one access-token lifetime); that is logged as an error.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from redis.asyncio import Redis
from redis.exceptions import RedisError

from shared.redis import RedisKeys

logger = logging.getLogger("shared.token_versions")

# The value of a deleted user's key: no token of theirs matches it.
DELETED = b"deleted"
_REDIS_DOWN = (RedisError, OSError, TimeoutError)
# Only ever raise the stored version; `deleted` is final.
_RAISE = """
local current = redis.call('GET', KEYS[1])
if current == 'deleted' then
    return 0
end
if ARGV[1] == 'deleted' or not current or tonumber(ARGV[1]) > tonumber(current) then
    redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
    return 1
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 0
"""

# Reads the version from the source of truth (and writes it back to Redis): the user service's
# database in the user service, its internal API everywhere else. None: no such user.
Lookup = Callable[[uuid.UUID], Awaitable[int | None]]


def _encode(version: int | None) -> bytes:
    return DELETED if version is None else str(version).encode()


def _decode(raw: bytes | str) -> int | None:
    raw = raw if isinstance(raw, bytes) else raw.encode()
    return None if raw == DELETED else int(raw)


class TokenVersionStore:
    """The Redis side, shared by the writer (the user service) and every reader."""

    def __init__(self, redis: Redis, key_prefix: str, ttl_seconds: int = 0) -> None:
        """`ttl_seconds`: how long a written key lives (writers only; readers never write)."""
        self.redis = redis
        self.keys = RedisKeys(key_prefix)
        self.ttl_seconds = ttl_seconds
        self._raise = redis.register_script(_RAISE)

    def key(self, user_id: uuid.UUID) -> str:
        return self.keys("token_version", user_id)

    async def get(self, user_id: uuid.UUID) -> tuple[bool, int | None]:
        """`(found, version)`; `version` None means the user was deleted. Raises if Redis is
        down (the caller falls back to the user service)."""
        raw = await self.redis.get(self.key(user_id))
        return (False, None) if raw is None else (True, _decode(raw))

    async def remember(self, user_id: uuid.UUID, version: int | None) -> None:
        """Write back what the database said, unless a value is there already."""
        try:
            await self.redis.set(self.key(user_id), _encode(version), ex=self.ttl_seconds, nx=True)
        except _REDIS_DOWN as exc:
            logger.warning("token version write-back failed: %s", type(exc).__name__)

    async def announce(self, user_id: uuid.UUID, version: int | None) -> None:
        """Publish a revocation (a higher version, or None for a deleted user)."""
        try:
            await self._raise(keys=[self.key(user_id)], args=[_encode(version), self.ttl_seconds])
        except _REDIS_DOWN as exc:
            logger.error(
                "token revocation not published to Redis (%s): tokens issued before it may work "
                "until the cached version expires (at most %ss)",
                type(exc).__name__,
                self.ttl_seconds,
            )


@dataclass
class TokenVersions:
    """A user's current token version, as any service checks it on each request."""

    store: TokenVersionStore
    lookup: Lookup  # the source of truth when Redis has no answer
    cache_seconds: float
    max_cached: int = 10_000
    clock: Callable[[], float] = time.monotonic
    _cache: OrderedDict[uuid.UUID, tuple[float, int | None]] = field(default_factory=OrderedDict)

    async def current(self, user_id: uuid.UUID) -> int | None:
        """The version tokens of `user_id` must carry; None when the user no longer exists."""
        now = self.clock()
        cached = self._cache.get(user_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            found, version = await self.store.get(user_id)
        except _REDIS_DOWN as exc:
            logger.warning(
                "token version read failed, asking the user service: %s", type(exc).__name__
            )
            found, version = False, None
        if not found:
            version = await self.lookup(user_id)
        self._remember_locally(user_id, version, now)
        return version

    def forget(self, user_id: uuid.UUID) -> None:
        """Drop this process's copy, so a revocation made here holds here at once."""
        self._cache.pop(user_id, None)

    def _remember_locally(self, user_id: uuid.UUID, version: int | None, now: float) -> None:
        if self.cache_seconds <= 0:
            return
        self._cache[user_id] = (now + self.cache_seconds, version)
        self._cache.move_to_end(user_id)
        while len(self._cache) > self.max_cached:
            self._cache.popitem(last=False)
