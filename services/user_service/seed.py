"""The demo's users, created idempotently by `make run` (a second run changes nothing).

- the admin: `DEMO_ADMIN_EMAIL` / `DEMO_ADMIN_PASSWORD`, role admin;
- the demo user: `DEMO_USER_EMAIL` / `DEMO_USER_PASSWORD`, "Demo User", email and push on,
  one android device `demo-device-token` (what the FCM stand-in accepts).

Existing accounts are left as they are (their passwords are not re-hashed or reset). The demo
passwords must pass the same strength check as a registration. Never in production: the
settings hold no demo values there, and the seed refuses to run.
"""

from __future__ import annotations

import uuid

from services.user_service import repository as repo
from services.user_service.accounts import Accounts, open_accounts
from services.user_service.settings import user_service_settings
from shared.db import session_scope
from shared.settings import Settings, get_settings, refuse_demo_in_production

DEMO_USER_NAME = "Demo User"
DEMO_DEVICE_TOKEN = "demo-device-token"


async def _ensure_user(
    accounts: Accounts, *, name: str, email: str, password: str, role: str
) -> uuid.UUID:
    async with session_scope(accounts.sessions) as session:
        existing = await repo.get_user_by_email(session, email)
    if existing is not None:
        return existing.id
    await accounts.passwords.check_strength(password, [name, email])
    user, _ = await accounts.create_user(name=name, email=email, password=password, role=role)
    return user.id


async def seed_demo(settings: Settings) -> dict[str, str]:
    refuse_demo_in_production(settings)
    service_settings = user_service_settings(settings)
    admin_email, admin_password = service_settings.demo_admin_email, settings.demo_admin_password
    user_email, user_password = service_settings.demo_user_email, settings.demo_user_password
    # Outside production the settings always hold the demo values.
    assert admin_email and admin_password and user_email and user_password
    async with open_accounts(service_settings) as resources:
        accounts = resources.accounts
        admin_id = await _ensure_user(
            accounts,
            name="Demo Admin",
            email=admin_email,
            password=admin_password.get_secret_value(),
            role="admin",
        )
        demo_user_id = await _ensure_user(
            accounts,
            name=DEMO_USER_NAME,
            email=user_email,
            password=user_password.get_secret_value(),
            role="user",
        )
        async with session_scope(accounts.sessions) as session:
            device = await repo.get_device_by_token(session, DEMO_DEVICE_TOKEN)
            if device is None:
                await repo.upsert_device(
                    session, demo_user_id, token=DEMO_DEVICE_TOKEN, platform="android"
                )
        if device is None:
            await accounts.cache.invalidate([demo_user_id])
    return {"admin_id": str(admin_id), "demo_user_id": str(demo_user_id)}


if __name__ == "__main__":
    import asyncio
    import json

    print(json.dumps(asyncio.run(seed_demo(get_settings()))))
