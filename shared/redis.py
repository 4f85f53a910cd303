"""The Redis client factory. Every key goes through `RedisKeys` so one prefix isolates a
deployment (or a test run) from every other user of the same Redis."""

from __future__ import annotations

from redis.asyncio import Redis

from shared.settings import Settings


def create_redis(settings: Settings) -> Redis:
    return Redis.from_url(
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
