"""Fixtures every test shares: real PostgreSQL, Redis and RabbitMQ, isolated per test run.

A run gets its own database (`notif_test_<run>`, migrated to head), its own RabbitMQ vhost and
its own Redis key prefix in database 1; all three are removed when the run ends. So
`make test` passes while `make run` is up on the same machine.

It also gets its own token-signing key and a real user service (uvicorn, in a thread) at
`base_settings.user_service_url`, so any service under test verifies access tokens exactly as
in production: public keys from the user service's JWKS, token versions from Redis or the
user service. `tests/identity.py` makes accounts and tokens with the same key.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from redis.asyncio import Redis

from devtools.stack import free_port, settings_env
from services.user_service.app import create_app as create_user_service
from services.user_service.settings import UserServiceSettings, user_service_settings
from shared.migrate import migrate_all
from shared.settings import Settings
from shared.token_keys import private_key_pem
from tests.servers import serve_in_thread

ROOT = Path(__file__).resolve().parent.parent
RUN_ID = uuid.uuid4().hex[:10]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--drills",
        action="store_true",
        help="also run the fault drills (they restart RabbitMQ; `make test` passes this)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--drills"):
        return
    skip = pytest.mark.skip(reason="fault drill: run with --drills (make test does)")
    for item in items:
        if "drill" in item.keywords:
            item.add_marker(skip)


def pytest_sessionstart(session: pytest.Session) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "check_services.py")],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        pytest.exit(result.stderr.strip(), returncode=3)


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


# Test suites register and log in hundreds of times from one address; the throttling tests set
# their own limits.
RELAXED_USER_SERVICE = {
    "password_hash_profile": "fast",
    "login_rate_per_address": 1_000_000,
    "login_failures_per_address": 1_000_000,
    "registrations_per_address_per_hour": 1_000_000,
}


def relaxed_user_service(settings: Settings) -> UserServiceSettings:
    """The user service's settings for tests: cheap hashing, no per-address limits."""
    return user_service_settings(settings).model_copy(update=RELAXED_USER_SERVICE)


@pytest.fixture(scope="session")
def base_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Settings pointing at this run's own database, vhost, Redis prefix, signing key and
    user service."""
    database = f"notif_test_{RUN_ID}"
    vhost = f"notif_test_{RUN_ID}"
    _rabbitmqctl("add_vhost", vhost)
    _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    key_file = tmp_path_factory.mktemp("keys") / "signing-key.pem"
    key_file.write_bytes(private_key_pem(Ed25519PrivateKey.generate()))
    user_service_port = free_port()
    settings = Settings(
        _env_file=None,
        environment="test",
        log_format="text",
        database_url=f"postgresql+asyncpg://postgres@127.0.0.1:5432/{database}",
        db_pool_size=5,
        redis_url="redis://127.0.0.1:6379/1",
        redis_key_prefix=f"test-{RUN_ID}:",
        rabbitmq_url=f"amqp://guest:guest@127.0.0.1:5672/{vhost}",
        internal_api_key="test-internal-key",
        jwt_private_key_file=str(key_file),
        user_service_url=f"http://127.0.0.1:{user_service_port}",
        retry_base_delay_ms=100,
        retry_max_delay_ms=2000,
        retry_delay_levels_ms=[100, 200, 400, 800, 1600],
        worker_shutdown_seconds=5,
        publish_timeout_seconds=3,
    )
    migrate_all(settings)
    try:
        user_service = create_user_service(relaxed_user_service(settings))
        with serve_in_thread(user_service, settings, port=user_service_port):
            yield settings
    finally:
        _rabbitmqctl("delete_vhost", vhost)
        asyncio.run(_drop_database(database))
        asyncio.run(_delete_prefix(settings))


async def _drop_database(name: str) -> None:
    conn = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def _delete_prefix(settings: Settings) -> None:
    client = Redis.from_url(settings.redis_url)
    try:
        keys = [k async for k in client.scan_iter(match=settings.redis_key_prefix + "*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture(scope="session")
def make_vhost() -> Iterator[Callable[[str], str]]:
    """A factory of extra vhosts (removed at the end of the run) for tests that run whole
    workers, so those workers never take messages meant for another test. Returns the URL."""
    made: list[str] = []

    def make(purpose: str) -> str:
        vhost = f"notif_test_{RUN_ID}_{purpose}_{uuid.uuid4().hex[:6]}"
        _rabbitmqctl("add_vhost", vhost)
        _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        made.append(vhost)
        return f"amqp://guest:guest@127.0.0.1:5672/{vhost}"

    yield make
    for vhost in made:
        _rabbitmqctl("delete_vhost", vhost)


@pytest.fixture(scope="session")
def base_env(base_settings: Settings) -> dict[str, str]:
    """Environment variables for subprocesses that should see `base_settings`."""
    return settings_env(base_settings)


async def wait_for(
    condition: Callable[[], Awaitable[Any]], *, timeout: float = 15.0, interval: float = 0.05
) -> Any:
    """Poll `condition` until it returns something truthy; fail with a clear message otherwise."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await condition()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value: {result!r})")
        await asyncio.sleep(interval)


@pytest.fixture
async def redis_client(base_settings: Settings) -> AsyncIterator[Redis]:
    client = Redis.from_url(base_settings.redis_url)
    yield client
    await client.aclose()
