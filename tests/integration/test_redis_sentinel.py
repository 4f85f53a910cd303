"""`REDIS_URL=redis+sentinel://…` finds the master through a real Sentinel (shared/redis.py).

The test runs a Sentinel of its own (`redis-server --sentinel`, a config in tmp) that monitors
the shared Redis under a master name of its own, and stops it afterwards. The shared Redis is
only read and written under this run's key prefix; nothing reconfigures it (a quorum of 1 with
no replica never fails over).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from devtools.stack import free_port
from shared.contacts import CHANGES_CHANNEL
from shared.redis import RedisKeys, create_redis, redis_from_url
from shared.settings import Settings
from tests.conftest import wait_for

pytestmark = pytest.mark.skipif(not shutil.which("redis-server"), reason="needs redis-server")


@pytest.fixture
def sentinel(tmp_path: Path, base_settings: Settings) -> Iterator[tuple[int, str]]:
    redis = urlsplit(base_settings.redis_url)
    port, master = free_port(), f"notif-test-{uuid.uuid4().hex[:8]}"
    config = tmp_path / "sentinel.conf"  # Sentinel rewrites its config: it must be writable
    config.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\nlogfile {tmp_path / 'sentinel.log'}\n"
        f"sentinel monitor {master} {redis.hostname} {redis.port} 1\n"
        f"sentinel down-after-milliseconds {master} 60000\n"
    )
    process = subprocess.Popen(["redis-server", str(config), "--sentinel"])
    try:
        yield port, master
    finally:
        process.terminate()
        process.wait(10)


def _listening(port: int):  # type: ignore[no-untyped-def]
    async def condition() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        except OSError:
            return False
        return True

    return condition


async def test_clients_reach_the_master_through_the_sentinel(
    base_settings: Settings, sentinel: tuple[int, str]
) -> None:
    port, master = sentinel
    await wait_for(_listening(port))
    db = urlsplit(base_settings.redis_url).path.strip("/") or "0"
    # A dead sentinel first: the client asks the next one.
    url = f"redis+sentinel://127.0.0.1:{free_port()},127.0.0.1:{port}/{master}/{db}"
    settings = base_settings.model_copy(update={"redis_url": url})
    keys = RedisKeys(base_settings.redis_key_prefix)
    client = create_redis(settings)
    direct = redis_from_url(base_settings.redis_url)
    try:
        key = keys("sentinel-test", uuid.uuid4().hex)
        await client.set(key, b"through the sentinel", ex=60)
        assert await direct.get(key) == b"through the sentinel"  # the very master, same db
        assert await client.get(key) == b"through the sentinel"
        await client.delete(key)
        # Pub/sub (the contact-change announcements) goes through the same factory.
        async with client.pubsub(ignore_subscribe_messages=True) as pubsub:
            channel = keys(CHANGES_CHANNEL, "sentinel-test")
            await pubsub.subscribe(channel)
            await wait_for(lambda: _published(direct, channel))
            # The subscribe confirmation reads as None (ignored); the next is the message.
            message = await wait_for(lambda: pubsub.get_message(timeout=0.2))
            assert message["data"] == b"hello"
    finally:
        await client.aclose()
        await direct.aclose()


async def _published(client, channel: str) -> bool:  # type: ignore[no-untyped-def]
    return bool(await client.publish(channel, b"hello"))
