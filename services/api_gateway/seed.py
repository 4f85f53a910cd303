"""The demo seed: the gateway key `make run` prints in its curl example. Idempotent."""

from __future__ import annotations

from typing import Any

import asyncpg

from services.api_gateway.api_keys import store_key
from shared.db import asyncpg_dsn
from shared.settings import Settings


async def seed_demo(settings: Settings) -> dict[str, Any]:
    """Store `settings.demo_api_key` as the key named "demo" (once; a rerun changes nothing)."""
    conn = await asyncpg.connect(asyncpg_dsn(settings.database_url))
    try:
        created = await store_key(conn, settings.demo_api_key.get_secret_value(), name="demo")
    finally:
        await conn.close()
    return {"api_key_name": "demo", "created": created}
