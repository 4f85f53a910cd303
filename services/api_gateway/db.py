"""The gateway's asyncpg pool: the hot path uses raw SQL over asyncpg, not the ORM.

FACTS.md: the machine has about 1 ms of CPU per gateway request, and SQLAlchemy's async layer
costs a good part of that per statement. The few statements of the send path are hand-written
CTEs sent over asyncpg with its prepared-statement cache. SQLAlchemy (shared.db) is still used
where `shared.notification_status.transition` needs it (callbacks, the relay).
"""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson

from shared.settings import Settings

DB_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
)
"""Errors that mean "PostgreSQL is unreachable or refusing", not "the query is wrong"."""


def asyncpg_dsn(database_url: str) -> str:
    """`postgresql+asyncpg://...` (SQLAlchemy's spelling) as a plain libpq URL for asyncpg."""
    scheme, sep, rest = database_url.partition("://")
    return f"{scheme.split('+', 1)[0]}{sep}{rest}" if sep else database_url


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=_dumps, decoder=orjson.loads, schema="pg_catalog")


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Replaces asyncpg's default reset on release (`RESET ALL`, `UNLISTEN *`, ... : one more
    round trip per query). The gateway never changes session state, and asyncpg still rolls
    back a transaction left open."""


async def create_pool(settings: Settings, *, application_name: str) -> asyncpg.Pool:
    pool: asyncpg.Pool = await asyncpg.create_pool(
        asyncpg_dsn(settings.database_url),
        min_size=1,
        max_size=settings.db_pool_size,
        init=_init_connection,
        reset=_keep_session,
        timeout=5,
        command_timeout=10,
        server_settings={"application_name": application_name},
    )
    return pool
