"""Database engine and session helpers (SQLAlchemy 2 async over asyncpg).

`DATABASE_URL` may list several hosts (`shared/database_url.py` spells it for each client).

Each data owner keeps its tables in its own PostgreSQL schema (`user_service`,
`template_service`, `api_gateway`) with its own Alembic history, so owners never share a
migration even when they share a server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import orjson
from sqlalchemy import MetaData, text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase

from shared.database_url import asyncpg_dsn as asyncpg_dsn  # re-exported: callers use shared.db
from shared.database_url import sqlalchemy_url
from shared.settings import Settings

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def declarative_base_for(schema: str) -> type[DeclarativeBase]:
    """A declarative base whose tables live in `schema`, with stable constraint names."""

    class Base(DeclarativeBase):
        metadata = MetaData(schema=schema, naming_convention=NAMING_CONVENTION)

    return Base


def create_engine(settings: Settings, *, application_name: str) -> AsyncEngine:
    """The SQLAlchemy engine: `pool_pre_ping` tests a pooled connection before handing it out,
    so a connection the server (or a failover) closed is replaced, not used."""
    return create_async_engine(
        sqlalchemy_url(settings.database_url),
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_pre_ping=True,
        pool_recycle=1800,
        # Statement parameters (tokens, addresses, hashes) stay out of logs and error messages.
        hide_parameters=True,
        connect_args={
            "server_settings": {"application_name": application_name},
            "timeout": 5,
            "command_timeout": 10,
        },
    )


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def session_scope(factory: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A session in a transaction: committed on success, rolled back on error."""
    async with factory() as session, session.begin():
        yield session


async def check_database(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


DB_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
)
"""Errors that mean "PostgreSQL is unreachable or refusing", not "the query is wrong"."""


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=_dumps, decoder=orjson.loads, schema="pg_catalog")


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Replaces asyncpg's default reset on release (`RESET ALL`, `UNLISTEN *`, ... : one more
    round trip per query). The gateway never changes session state, and asyncpg still rolls
    back a transaction left open."""


async def create_asyncpg_pool(
    settings: Settings, *, application_name: str, max_size: int | None = None
) -> asyncpg.Pool:
    """A plain asyncpg pool for hot paths (the send path, status transitions): SQLAlchemy's
    async layer costs a good part of the per-message CPU budget (docs/measurements.md)."""
    pool: asyncpg.Pool = await asyncpg.create_pool(
        asyncpg_dsn(settings.database_url),
        min_size=1,
        max_size=max_size or settings.db_pool_size,
        init=_init_connection,
        reset=_keep_session,
        timeout=5,
        command_timeout=10,
        server_settings={"application_name": application_name},
    )
    return pool
