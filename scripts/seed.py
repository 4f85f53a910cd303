"""Seed the demo (idempotent): an admin, a demo user with a device, `welcome` templates for
email and push, and the gateway API key. `python -m scripts.seed` (or `make seed`)."""

from __future__ import annotations

import asyncio
import importlib
import json
from typing import Any

from shared.settings import Settings, get_settings, refuse_demo_in_production

# Order matters: templates may record the admin as their author.
SEEDERS = ("user_service", "template_service", "api_gateway")


async def seed_all(settings: Settings) -> dict[str, Any]:
    refuse_demo_in_production(settings)
    results: dict[str, Any] = {}
    for service in SEEDERS:
        module = importlib.import_module(f"services.{service}.seed")
        results[service] = await module.seed_demo(settings)
    return results


def main() -> int:
    results = asyncio.run(seed_all(get_settings()))
    print("seeded demo data:", json.dumps(results, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
