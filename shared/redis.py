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

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from redis.asyncio import Redis
from redis.asyncio.sentinel import Sentinel

from shared.settings import Settings

SENTINEL_SCHEME = "redis+sentinel"
DEFAULT_SENTINEL_PORT = 26379


@dataclass(frozen=True)
class SentinelUrl:
    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int
    password: str | None


def parse_sentinel_url(url: str) -> SentinelUrl:
    """Read `redis+sentinel://[:password@]h1:p1,h2:p2/MASTER[/DB]`; `ValueError` otherwise (the
    message never repeats the URL, which may hold a password)."""
    parts = urlsplit(url)
    if parts.scheme != SENTINEL_SCHEME:
        raise ValueError(f"not a {SENTINEL_SCHEME}:// URL")
    userinfo, _, host_list = parts.netloc.rpartition("@")
    password = unquote(userinfo.partition(":")[2]) or None
    sentinels = []
    for entry in host_list.split(","):
        host, _, port = entry.rpartition(":") if ":" in entry else (entry, "", "")
        if not host or (port and not port.isdigit()):
            raise ValueError("each sentinel must be host or host:port")
        sentinels.append((host, int(port) if port else DEFAULT_SENTINEL_PORT))
    path = [p for p in parts.path.split("/") if p]
    if not 1 <= len(path) <= 2 or (len(path) == 2 and not path[1].isdigit()):
        raise ValueError("the path must be /MASTER_NAME or /MASTER_NAME/DB")
    return SentinelUrl(tuple(sentinels), path[0], int(path[1]) if len(path) == 2 else 0, password)


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
