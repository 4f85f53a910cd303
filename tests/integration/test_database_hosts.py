"""`DATABASE_URL` with several hosts, and pools that outlive their connections
(shared/database_url.py, shared/db.py), against the real PostgreSQL.

The shared server is never restarted: a closed port stands for a host that is down, and the
fault proxy (devtools/fault_proxy.py) in front of the server cuts every connection, which is
what a client sees of a restart or a failover.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from devtools.fault_proxy import FaultProxy
from devtools.stack import free_port
from shared.database_url import parse_database_url
from shared.db import DB_UNAVAILABLE, create_asyncpg_pool, create_engine
from shared.migrate import migrate_all
from shared.settings import Settings
from tests.conftest import wait_for


def _with_hosts(settings: Settings, hosts: str, query: str = "") -> Settings:
    url = parse_database_url(settings.database_url)
    auth = f"{url.userinfo}@" if url.userinfo else ""
    database_url = f"{url.driver}://{auth}{hosts}/{url.database}{query}"
    return settings.model_copy(update={"database_url": database_url})


@pytest.fixture
def real_host(base_settings: Settings) -> str:
    ((host, port),) = parse_database_url(base_settings.database_url).hosts
    return f"{host}:{port}"


@pytest.fixture
def proxy(base_settings: Settings) -> Iterator[FaultProxy]:
    ((host, port),) = parse_database_url(base_settings.database_url).hosts
    proxy = FaultProxy(free_port(), host, port).start()
    yield proxy
    proxy.stop()


READ_WRITE = "?target_session_attrs=read-write"


async def test_the_asyncpg_pool_skips_a_host_that_is_down(
    base_settings: Settings, real_host: str
) -> None:
    settings = _with_hosts(base_settings, f"127.0.0.1:{free_port()},{real_host}", READ_WRITE)
    pool = await create_asyncpg_pool(settings, application_name="test_hosts")
    try:
        assert await pool.fetchval("SHOW transaction_read_only") == "off"
        assert await pool.fetchval("SELECT current_database()") == (
            parse_database_url(base_settings.database_url).database
        )
    finally:
        await pool.close()


async def test_the_engine_skips_a_host_that_is_down(
    base_settings: Settings, real_host: str
) -> None:
    settings = _with_hosts(base_settings, f"127.0.0.1:{free_port()},{real_host}", READ_WRITE)
    engine = create_engine(settings, application_name="test_hosts")
    try:
        async with engine.connect() as conn:
            assert (await conn.execute(text("SHOW transaction_read_only"))).scalar() == "off"
    finally:
        await engine.dispose()


async def test_target_session_attrs_reaches_both_clients(
    base_settings: Settings, real_host: str
) -> None:
    # The one server is a primary: asking for a standby only must find none, which shows the
    # parameter is applied (not dropped on the way) by the pool and by the engine alike.
    settings = _with_hosts(base_settings, real_host, "?target_session_attrs=standby")
    with pytest.raises(asyncpg.exceptions.TargetServerAttributeNotMatched):
        await create_asyncpg_pool(settings, application_name="test_hosts")
    engine = create_engine(settings, application_name="test_hosts")
    try:
        with pytest.raises(DBAPIError) as refused:
            async with engine.connect():
                pass
        assert isinstance(refused.value.orig.__cause__, asyncpg.TargetServerAttributeNotMatched)
    finally:
        await engine.dispose()


async def test_the_asyncpg_pool_serves_the_next_query_after_every_connection_is_cut(
    base_settings: Settings, proxy: FaultProxy, real_host: str
) -> None:
    # The proxy second, behind a closed port, as a failover's new primary would be.
    proxied = f"127.0.0.1:{free_port()},127.0.0.1:{proxy.listen_port}"
    pool = await create_asyncpg_pool(_with_hosts(base_settings, proxied), application_name="t")
    try:
        assert await pool.fetchval("SELECT 1") == 1  # an idle connection in the pool
        async with pool.acquire() as busy:
            in_flight = asyncio.create_task(busy.fetchval("SELECT pg_sleep(30)"))
            await wait_for(_sleeping(base_settings, "t"))
            proxy.drop_connections()
            with pytest.raises(DB_UNAVAILABLE):
                await in_flight
        await wait_for(_no_connections(proxy))
        # The idle connection and the one that was in use are both gone; the pool reconnects.
        assert await pool.fetchval("SELECT 2") == 2
        assert await pool.fetchval("SHOW transaction_read_only") == "off"
    finally:
        await pool.close()


async def test_the_engine_serves_the_next_query_after_every_connection_is_cut(
    base_settings: Settings, proxy: FaultProxy
) -> None:
    proxied = f"127.0.0.1:{free_port()},127.0.0.1:{proxy.listen_port}"
    engine = create_engine(_with_hosts(base_settings, proxied), application_name="t_engine")
    try:
        async with engine.connect() as conn:  # returned to the pool, idle
            assert (await conn.execute(text("SELECT 1"))).scalar() == 1
        async with engine.connect() as busy:
            in_flight = asyncio.create_task(busy.execute(text("SELECT pg_sleep(30)")))
            await wait_for(_sleeping(base_settings, "t_engine"))
            proxy.drop_connections()
            with pytest.raises(DBAPIError) as cut:
                await in_flight
            assert cut.value.connection_invalidated
        # pool_pre_ping finds the idle connection dead and replaces it before the query.
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT 2"))).scalar() == 2
    finally:
        await engine.dispose()


def _sleeping(settings: Settings, application_name: str):  # type: ignore[no-untyped-def]
    async def condition() -> bool:
        conn = await asyncpg.connect(
            parse_database_url(settings.database_url).with_database("postgres").libpq()
        )
        try:
            found = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE application_name = $1 AND query LIKE '%pg_sleep%' AND state = 'active'",
                application_name,
            )
            return bool(found)
        finally:
            await conn.close()

    return condition


def _no_connections(proxy: FaultProxy):  # type: ignore[no-untyped-def]
    async def condition() -> bool:
        return proxy.open_connections == 0

    return condition


def test_migrations_run_through_a_url_with_several_hosts(
    base_settings: Settings, real_host: str
) -> None:
    # The database check (asyncpg) and every owner's Alembic run (SQLAlchemy) read the same URL.
    settings = _with_hosts(base_settings, f"127.0.0.1:{free_port()},{real_host}", READ_WRITE)
    migrate_all(settings)  # already at head: connects, finds the database, upgrades nothing
