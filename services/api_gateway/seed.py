"""The demo seed: the gateway key `make run` prints in its curl example. Idempotent.

The demo key may send and use the operator API (`send`, `admin`), so one key drives the
curl example and the `notify dlq` commands on a developer machine.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from services.api_gateway.api_keys import set_scopes, store_key
from shared.db import asyncpg_dsn
from shared.settings import Settings

DEMO_SCOPES = ("send", "admin")


async def seed_demo(settings: Settings) -> dict[str, Any]:
    """Store `settings.demo_api_key` as the key named "demo" (once; a rerun changes nothing)."""
    conn = await asyncpg.connect(asyncpg_dsn(settings.database_url))
    try:
        raw = settings.demo_api_key.get_secret_value()
        created = await store_key(conn, raw, name="demo", scopes=DEMO_SCOPES)
        if not created:  # a key seeded before scopes existed
            await set_scopes(conn, raw, DEMO_SCOPES)
    finally:
        await conn.close()
    return {"api_key_name": "demo", "created": created}
