"""The Redis client factory. Every key goes through `RedisKeys` so one prefix isolates a
deployment (or a test run) from every other user of the same Redis.

`REDIS_URL` is a plain `redis://` / `rediss://` URL (redis-py's `from_url`), or, for a
Sentinel-managed Redis, `redis+sentinel://[:password@]host1:26379,host2:26379/MASTER[/DB]`:
the sentinels are asked for the current master of `MASTER` at every (re)connect, so after a
failover the clients reconnect to the promoted replica by themselves. The password is the
data nodes' (the sentinels are asked without one). Every client in `shared/` and `services/`
is made here, so both forms work everywhere.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.asyncio.sentinel import Sentinel

from shared.redis_url import SENTINEL_SCHEME, parse_sentinel_url
from shared.settings import Settings


def redis_from_url(url: str, **options: Any) -> Redis:
    """A client for `url` in either form; `options` are redis-py connection options."""
    if urlsplit(url).scheme != SENTINEL_SCHEME:
        return Redis.from_url(url, **options)
    target = parse_sentinel_url(url)
    sentinel_options = {k: v for k, v in options.items() if k.startswith("socket_")}
    sentinel = Sentinel(  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
        list(target.sentinels), sentinel_kwargs=sentinel_options
    )
    master: Redis = sentinel.master_for(
        target.master, db=target.db, password=target.password, **options
    )
    return master


def create_redis(settings: Settings) -> Redis:
    return redis_from_url(
        settings.redis_url,
        socket_timeout=0.5,
        socket_connect_timeout=0.5,
        health_check_interval=30,
        decode_responses=False,
    )


class RedisKeys:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def __call__(self, *parts: object) -> str:
        return self.prefix + ":".join(str(p) for p in parts)


async def check_redis(client: Redis) -> None:
    await client.ping()
