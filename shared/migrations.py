"""Alembic plumbing shared by every data owner's migration history.

Each owner has `services/<owner>/migrations/` with its own `env.py` that calls
`run_migrations(metadata, schema)`; `python -m shared.migrate` upgrades all of them. Each
history keeps its version table inside its own schema.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import MetaData, pool, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from shared.database_url import sqlalchemy_url


def _run_sync(connection: Connection, metadata: MetaData | None, schema: str) -> None:
    connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table_schema=schema,
        include_schemas=False,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async(url: str, metadata: MetaData | None, schema: str) -> None:
    engine = create_async_engine(sqlalchemy_url(url), poolclass=pool.NullPool)
    async with engine.begin() as conn:
        await conn.run_sync(_run_sync, metadata, schema)
    await engine.dispose()


def run_migrations(metadata: MetaData | None, schema: str) -> None:
    """Entry point for an owner's `env.py` (online mode only: we always have a database)."""
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("sqlalchemy.url is not set; run migrations through shared.migrate")
    asyncio.run(_run_async(url, metadata, schema))
