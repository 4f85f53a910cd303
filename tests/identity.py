"""Accounts and access tokens for tests, made the way the user service makes them.

Accounts are real rows (created through the user service's own use case), and tokens are
signed with this run's key (`base_settings.jwt_private_key_file`), so every service verifies
them through the JWKS and the token-version check like any other.
"""

from __future__ import annotations

import uuid
from typing import Any

from services.user_service.accounts import open_accounts
from services.user_service.tokens import issue_access_token, load_signing_keys
from shared.auth import Role
from shared.settings import Settings
from tests.conftest import relaxed_user_service

PASSWORD = "correct-horse-battery"


async def create_account(settings: Settings, *, role: Role = "user", **fields: Any) -> uuid.UUID:
    """A user (or admin) row; the public API never grants the admin role."""
    service_settings = relaxed_user_service(settings)
    values = {
        "name": "Test Account",
        "email": f"{role}-{uuid.uuid4().hex[:12]}@example.com",
        "password": PASSWORD,
        **fields,
    }
    async with open_accounts(service_settings) as resources:
        user, _ = await resources.accounts.create_user(role=role, **values)
    return user.id


def mint_token(
    settings: Settings, user_id: uuid.UUID, role: Role = "user", *, version: int = 0
) -> str:
    """An access token as the user service would issue it for this user and version."""
    service_settings = relaxed_user_service(settings)
    token, _ = issue_access_token(
        load_signing_keys(service_settings),
        service_settings,
        user_id=user_id,
        role=role,
        version=version,
    )
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
