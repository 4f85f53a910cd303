"""The email worker owns no data, so its demo seed has nothing to add (and is idempotent)."""

from __future__ import annotations

from typing import Any

from shared.settings import Settings


async def seed_demo(settings: Settings) -> dict[str, Any]:
    return {}
