"""Sessions: login, refresh, logout and revocation of every token of a user.

A login starts a refresh-token family and answers an access token (15 minutes) with a refresh
token (30 days). `refresh` swaps a refresh token for a new pair; the old one is marked used,
and presenting a used one again revokes its whole family, since either the client or a thief
holds a copy. `logout` revokes the family of the token it is given.

A revocation of everything a user holds (password change, deletion, the revoke endpoint) raises
the user's token version in the same transaction as the change and revokes their refresh
tokens; after the commit the new version is announced in Redis, where every service checks it
(`shared/token_versions.py`). The user service verifies tokens with the same code as everyone
else, with its database instead of its internal API as the fallback.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import cast

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.user_service import repository as repo
from services.user_service.errors import (
    invalid_credentials,
    invalid_refresh_token,
    refresh_token_reused,
    user_not_found,
)
from services.user_service.passwords import Passwords
from services.user_service.rate_limit import LoginThrottle
from services.user_service.schemas import TokenOut
from services.user_service.settings import UserServiceSettings
from services.user_service.tokens import (
    SigningKeys,
    issue_access_token,
    new_refresh_token,
    refresh_token_hash,
)
from shared.auth import Role, TokenVerifier
from shared.db import session_scope
from shared.token_versions import TokenVersions, TokenVersionStore

security_log = logging.getLogger("user_service.security")


@dataclass
class Auth:
    settings: UserServiceSettings
    sessions: async_sessionmaker[AsyncSession]
    passwords: Passwords
    throttle: LoginThrottle
    # None in processes that never sign or verify tokens (the demo seed).
    signing_keys: SigningKeys | None
    store: TokenVersionStore
    versions: TokenVersions = field(init=False)

    def __post_init__(self) -> None:
        self.versions = TokenVersions(
            self.store,
            lookup=self.token_version,
            cache_seconds=self.settings.token_version_cache_seconds,
        )

    @property
    def keys(self) -> SigningKeys:
        if self.signing_keys is None:
            raise RuntimeError("this process was opened without signing keys")
        return self.signing_keys

    def verifier(self) -> TokenVerifier:
        return TokenVerifier(keys=self.keys.key_source(), versions=self.versions)

    # --- sessions --------------------------------------------------------------------------

    async def login(self, email: str, password: str, address: str) -> TokenOut:
        """Same answer and about the same time for an unknown email and a wrong password."""
        await self.throttle.before_login(email, address)
        async with session_scope(self.sessions) as session:
            user = await repo.get_user_by_email(session, email)
            found = (user.id, user.role, user.password_hash) if user is not None else None
        if found is None:
            await self.passwords.burn(password)
            await self.throttle.login_failed(email, address)
            raise invalid_credentials()
        user_id, role, password_hash = found
        valid, new_hash = await self.passwords.verify(password, password_hash)
        if not valid:
            await self.throttle.login_failed(email, address)
            raise invalid_credentials()
        await self.throttle.login_succeeded(email, address)
        async with session_scope(self.sessions) as session:
            if new_hash is not None:
                # The stored hash used older parameters: upgrade it while we know the password.
                stored = await repo.get_user(session, user_id)
                if stored is not None:
                    await repo.update_user(session, stored, {"password_hash": new_hash})
            await repo.delete_expired_refresh_tokens(session, user_id)
            version = await repo.get_token_version(session, user_id)
            if version is None:  # deleted between the two transactions
                raise invalid_credentials()
            refresh_token = await self._new_refresh_token(session, user_id, uuid.uuid4())
        return await self._answer(user_id, cast(Role, role), version, refresh_token)

    async def refresh(self, token: str) -> TokenOut:
        """A new access token and a new refresh token for an unused, live refresh token."""
        reused_family = None
        async with session_scope(self.sessions) as session:
            row = await repo.lock_refresh_token(session, refresh_token_hash(token))
            if row is None or row.revoked_at is not None or row.expires_at <= _now():
                raise invalid_refresh_token()
            user_id = row.user_id
            if row.used_at is not None:
                await repo.revoke_refresh_family(session, row.family_id)
                reused_family = row.family_id  # committed before we refuse, below
            else:
                user = await repo.get_user(session, user_id)
                if user is None:
                    raise invalid_refresh_token()
                role, version = cast(Role, user.role), user.token_version
                await repo.mark_refresh_token_used(session, row.id)
                new_token = await self._new_refresh_token(session, user_id, row.family_id)
        if reused_family is not None:
            security_log.warning(
                "refresh token reused: session %s of user %s revoked",
                reused_family,
                user_id,
                extra={"event": "refresh_token_reused", "user_id": str(user_id)},
            )
            raise refresh_token_reused()
        return await self._answer(user_id, role, version, new_token)

    async def logout(self, token: str) -> None:
        """Revoke the session the refresh token belongs to (unknown tokens are ignored)."""
        async with session_scope(self.sessions) as session:
            row = await repo.lock_refresh_token(session, refresh_token_hash(token))
            if row is not None:
                await repo.revoke_refresh_family(session, row.family_id)

    async def _new_refresh_token(
        self, session: AsyncSession, user_id: uuid.UUID, family_id: uuid.UUID
    ) -> str:
        token = new_refresh_token()
        await repo.insert_refresh_token(
            session,
            user_id=user_id,
            family_id=family_id,
            token_hash=refresh_token_hash(token),
            expires_at=_now() + timedelta(seconds=self.settings.refresh_token_ttl_seconds),
        )
        return token

    async def _answer(
        self, user_id: uuid.UUID, role: Role, version: int, refresh_token: str
    ) -> TokenOut:
        await self.store.remember(user_id, version)  # the next check is one Redis GET
        access_token, expires_in = issue_access_token(
            self.keys, self.settings, user_id=user_id, role=role, version=version
        )
        return TokenOut(
            access_token=access_token, refresh_token=refresh_token, expires_in=expires_in
        )

    # --- revocation ------------------------------------------------------------------------

    async def revoke_tokens(self, user_id: uuid.UUID) -> None:
        """End every access and refresh token of the user, on every service."""
        async with session_scope(self.sessions) as session:
            version = await self.revoke_in(session, user_id)
            if version is None:
                raise user_not_found()
        await self.announce(user_id, version)

    async def revoke_in(self, session: AsyncSession, user_id: uuid.UUID) -> int | None:
        """Within the caller's transaction: the user's new token version (None if no such
        user). Call `announce` once the transaction has committed."""
        version = await repo.bump_token_version(session, user_id)
        if version is not None:
            await repo.revoke_refresh_tokens_of(session, user_id)
        return version

    async def announce(self, user_id: uuid.UUID, version: int | None) -> None:
        """Publish a committed revocation (None: the user was deleted)."""
        self.versions.forget(user_id)
        await self.store.announce(user_id, version)

    async def token_version(self, user_id: uuid.UUID) -> int | None:
        """The version from the database, written back to Redis for the next check."""
        async with session_scope(self.sessions) as session:
            version = await repo.get_token_version(session, user_id)
        await self.store.remember(user_id, version)
        return version


def _now() -> datetime:
    return datetime.now(UTC)
