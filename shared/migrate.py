"""Run every data owner's migrations: `python -m shared.migrate`.

Creates the database if it does not exist, then upgrades each owner's history to head.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from alembic import command
from alembic.config import Config

from shared.database_url import parse_database_url
from shared.settings import Settings, get_settings

ROOT = Path(__file__).resolve().parent.parent
OWNERS = ("user_service", "template_service", "api_gateway")


def alembic_config(owner: str, database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(ROOT / "services" / owner / "migrations"))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


async def ensure_database(database_url: str) -> None:
    """Create the target database through the server's `postgres` database if it is missing."""
    import asyncpg

    url = parse_database_url(database_url)
    name = url.database
    conn = await asyncpg.connect(url.with_database("postgres").libpq())
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


def migrate_all(settings: Settings) -> None:
    asyncio.run(ensure_database(settings.database_url))
    for owner in OWNERS:
        if (ROOT / "services" / owner / "migrations" / "env.py").exists():
            command.upgrade(alembic_config(owner, settings.database_url), "head")


def main() -> int:
    settings = get_settings()
    try:
        migrate_all(settings)
    except OSError as exc:
        print(f"migrate: cannot reach PostgreSQL ({exc}); start it and retry", file=sys.stderr)
        return 1
    print("migrations: all owners at head")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
