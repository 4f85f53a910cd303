"""The contact cache against real Redis: a miss that raced a write does not store stale data."""

from __future__ import annotations

import uuid

from redis.asyncio import Redis

from services.user_service.cache import ContactCache
from services.user_service.settings import UserServiceSettings


async def test_a_miss_that_raced_an_invalidation_is_not_stored(
    redis_client: Redis, us_settings: UserServiceSettings
) -> None:
    cache = ContactCache(redis_client, us_settings.redis_key_prefix, ttl_seconds=60)
    user_id = uuid.uuid4()

    async def load_then_a_write_commits() -> bytes:
        # The database answered with the old record; a writer commits and invalidates before
        # this miss gets to store it.
        await cache.invalidate([user_id])
        return b'{"name":"old"}'

    assert await cache.get_or_load(user_id, load_then_a_write_commits) == b'{"name":"old"}'
    assert await redis_client.get(cache.key(user_id)) is None

    async def load_new() -> bytes:
        return b'{"name":"new"}'

    assert await cache.get_or_load(user_id, load_new) == b'{"name":"new"}'
    assert await redis_client.get(cache.key(user_id)) == b'{"name":"new"}'


async def test_an_unknown_user_is_not_cached(
    redis_client: Redis, us_settings: UserServiceSettings
) -> None:
    cache = ContactCache(redis_client, us_settings.redis_key_prefix, ttl_seconds=60)
    user_id = uuid.uuid4()

    async def nobody() -> None:
        return None

    assert await cache.get_or_load(user_id, nobody) is None
    assert await redis_client.exists(cache.key(user_id)) == 0
