"""Demo data for the push service: the dev FCM service account (idempotent).

The push service owns no tables; what it needs for a demo is a service-account JSON the local
FCM stand-in trusts. It is created once (never replaced), so a second run changes nothing.
"""

from __future__ import annotations

from typing import Any

from services.push_service.credentials import service_account_info, service_account_path
from shared.settings import Settings


async def seed_demo(settings: Settings) -> dict[str, Any]:
    if settings.environment == "production":
        return {"service_account": "configured" if settings.fcm_service_account_file else None}
    info = service_account_info(settings)
    path = str(service_account_path(settings))
    return {"service_account_file": path, "client_email": info["client_email"]}
