"""The user service's use cases: registration, login, profile, preferences and devices.

Routes translate HTTP into these calls. Each call is one database transaction; the contact
cache is invalidated after the commit of anything that changes what the gateway reads, and
password hashing always happens outside a transaction (it is slow, and a held connection would
starve the pool under a burst of logins).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast

from redis.asyncio import Redis
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.user_service import repository as repo
from services.user_service.cache import ContactCache
from services.user_service.models import Device, Preferences, User
from services.user_service.passwords import Passwords
from services.user_service.rate_limit import LoginLimiter
from services.user_service.schemas import (
    DeviceIn,
    PreferencesIn,
    TokenOut,
    UserCreate,
    UserUpdate,
    is_device_token,
)
from services.user_service.settings import UserServiceSettings
from shared.auth import Principal, Role, issue_access_token
from shared.contracts import ContactPreferences, QuietHours
from shared.db import create_engine, create_session_factory, session_scope
from shared.errors import Conflict, Forbidden, NotFound, Unauthorized
from shared.redis import create_redis

_EMAIL_INDEX = "uq_users_email_lower"


def user_not_found() -> NotFound:
    return NotFound("no such user", code="user_not_found")


def invalid_credentials() -> Unauthorized:
    return Unauthorized("the email or password is wrong", code="invalid_credentials")


def preferences_out(preferences: Preferences | None) -> ContactPreferences:
    if preferences is None:
        return ContactPreferences(email=True, push=True, quiet_hours=None)
    start, end = preferences.quiet_hours_start, preferences.quiet_hours_end
    quiet_hours = (
        QuietHours(start=start.strftime("%H:%M"), end=end.strftime("%H:%M"))
        if start is not None and end is not None
        else None
    )
    return ContactPreferences(
        email=preferences.email, push=preferences.push, quiet_hours=quiet_hours
    )


@dataclass
class Accounts:
    settings: UserServiceSettings
    sessions: async_sessionmaker[AsyncSession]
    cache: ContactCache
    passwords: Passwords
    login_limiter: LoginLimiter

    # --- users -----------------------------------------------------------------------------

    async def register(self, body: UserCreate) -> tuple[User, Preferences | None]:
        preferences = body.preferences
        return await self.create_user(
            name=body.name,
            email=str(body.email),
            password=body.password,
            locale=body.locale,
            timezone=body.timezone,
            email_opt_in=preferences.email if preferences else True,
            push_opt_in=preferences.push if preferences else True,
            quiet_hours=preferences.quiet_hours.as_times()
            if preferences and preferences.quiet_hours
            else None,
            push_token=body.push_token,
        )

    async def create_user(
        self,
        *,
        name: str,
        email: str,
        password: str,
        role: str = "user",
        locale: str = "en",
        timezone: str = "UTC",
        email_opt_in: bool = True,
        push_opt_in: bool = True,
        quiet_hours: Any = None,
        push_token: str | None = None,
    ) -> tuple[User, Preferences | None]:
        """Create a user with preferences (and a device). 409 `email_taken` if the email is
        in use, decided by the unique index so concurrent registrations cannot both win."""
        async with session_scope(self.sessions) as session:
            # Cheap early answer that spares the hash; the index below is what decides.
            if await repo.email_exists(session, email):
                raise _email_taken()
        password_hash = await self.passwords.hash(password)
        previous_owner = None
        try:
            async with session_scope(self.sessions) as session:
                user = await repo.insert_user(
                    session,
                    name=name,
                    email=email,
                    password_hash=password_hash,
                    role=role,
                    locale=locale,
                    timezone=timezone,
                )
                preferences = await repo.put_preferences(
                    session, user.id, email=email_opt_in, push=push_opt_in, quiet_hours=quiet_hours
                )
                if push_token is not None:
                    _, _, previous_owner = await repo.upsert_device(
                        session, user.id, token=push_token, platform="android"
                    )
        except IntegrityError as exc:
            if _EMAIL_INDEX in str(exc.orig):
                raise _email_taken() from None
            raise
        await self.cache.invalidate([user.id] + ([previous_owner] if previous_owner else []))
        return user, preferences

    async def get_user(self, user_id: uuid.UUID) -> tuple[User, Preferences | None]:
        async with session_scope(self.sessions) as session:
            user = await repo.get_user(session, user_id)
            if user is None:
                raise user_not_found()
            return user, await repo.get_preferences(session, user_id)

    async def list_users(
        self, *, email: str | None, page: int, limit: int
    ) -> tuple[Sequence[User], int]:
        async with session_scope(self.sessions) as session:
            return await repo.list_users(session, email=email, page=page, limit=limit)

    async def update_user(
        self, user_id: uuid.UUID, body: UserUpdate, actor: Principal
    ) -> tuple[User, Preferences | None]:
        changes: dict[str, Any] = body.model_dump(
            exclude_unset=True, exclude={"password", "current_password"}
        )
        if body.password is not None:
            await self._check_password_change(user_id, body, actor)
            changes["password_hash"] = await self.passwords.hash(body.password)
        async with session_scope(self.sessions) as session:
            user = await repo.get_user(session, user_id)
            if user is None:
                raise user_not_found()
            if changes:
                user = await repo.update_user(session, user, changes)
            preferences = await repo.get_preferences(session, user_id)
        if changes:
            await self.cache.invalidate([user_id])
        return user, preferences

    async def _check_password_change(
        self, user_id: uuid.UUID, body: UserUpdate, actor: Principal
    ) -> None:
        """Owners prove they know the current password; an admin may reset someone else's."""
        if actor.is_admin and actor.user_id != user_id:
            return
        async with session_scope(self.sessions) as session:
            user = await repo.get_user(session, user_id)
            if user is None:
                raise user_not_found()
            current_hash = user.password_hash
        valid = False
        if body.current_password:
            valid, _ = await self.passwords.verify(body.current_password, current_hash)
        if not valid:
            raise Forbidden(
                "changing the password needs the correct current_password",
                code="invalid_current_password",
            )

    async def delete_user(self, user_id: uuid.UUID) -> None:
        async with session_scope(self.sessions) as session:
            if not await repo.delete_user(session, user_id):
                raise user_not_found()
        await self.cache.invalidate([user_id])

    # --- auth ------------------------------------------------------------------------------

    async def login(self, email: str, password: str, client_ip: str) -> TokenOut:
        """Same answer and about the same time for an unknown email and a wrong password."""
        await self.login_limiter.check(email, client_ip)
        async with session_scope(self.sessions) as session:
            user = await repo.get_user_by_email(session, email)
            found = (user.id, user.role, user.password_hash) if user is not None else None
        if found is None:
            await self.passwords.burn(password)
            raise invalid_credentials()
        user_id, role, password_hash = found
        valid, new_hash = await self.passwords.verify(password, password_hash)
        if not valid:
            raise invalid_credentials()
        if new_hash is not None:
            # The stored hash used older parameters: upgrade it while we know the password.
            async with session_scope(self.sessions) as session:
                stored = await repo.get_user(session, user_id)
                if stored is not None:
                    await repo.update_user(session, stored, {"password_hash": new_hash})
        await self.login_limiter.reset(email, client_ip)
        token, expires_in = issue_access_token(self.settings, user_id, cast(Role, role))
        return TokenOut(access_token=token, expires_in=expires_in)

    # --- preferences -----------------------------------------------------------------------

    async def get_preferences(self, user_id: uuid.UUID) -> ContactPreferences:
        _, preferences = await self.get_user(user_id)
        return preferences_out(preferences)

    async def put_preferences(self, user_id: uuid.UUID, body: PreferencesIn) -> ContactPreferences:
        async with session_scope(self.sessions) as session:
            if not await repo.lock_user(session, user_id):
                raise user_not_found()
            preferences = await repo.put_preferences(
                session,
                user_id,
                email=body.email,
                push=body.push,
                quiet_hours=body.quiet_hours.as_times() if body.quiet_hours else None,
            )
        await self.cache.invalidate([user_id])
        return preferences_out(preferences)

    # --- devices ---------------------------------------------------------------------------

    async def add_device(self, user_id: uuid.UUID, body: DeviceIn) -> tuple[Device, bool]:
        """Idempotent on the token: registering it again returns the same device."""
        async with session_scope(self.sessions) as session:
            if not await repo.lock_user(session, user_id):
                raise user_not_found()
            device, created, previous_owner = await repo.upsert_device(
                session, user_id, token=body.token, platform=body.platform
            )
        await self.cache.invalidate([user_id] + ([previous_owner] if previous_owner else []))
        return device, created

    async def list_devices(
        self, user_id: uuid.UUID, *, page: int, limit: int
    ) -> tuple[Sequence[Device], int]:
        async with session_scope(self.sessions) as session:
            if await repo.get_user(session, user_id) is None:
                raise user_not_found()
            return await repo.list_devices(session, user_id, page=page, limit=limit)

    async def remove_device(self, user_id: uuid.UUID, device_id: uuid.UUID) -> None:
        async with session_scope(self.sessions) as session:
            if not await repo.delete_device(session, user_id, device_id):
                raise NotFound("no such device for this user", code="device_not_found")
        await self.cache.invalidate([user_id])

    async def remove_device_by_token(self, token: str) -> bool:
        """The push service reports a dead token; gone already is just as good."""
        if not is_device_token(token):
            return False  # could never have been registered (and NUL would upset PostgreSQL)
        async with session_scope(self.sessions) as session:
            owner = await repo.delete_device_by_token(session, token)
        if owner is not None:
            await self.cache.invalidate([owner])
        return owner is not None

    # --- internal --------------------------------------------------------------------------

    async def contact_json(self, user_id: uuid.UUID) -> bytes:
        async def load() -> bytes | None:
            async with session_scope(self.sessions) as session:
                return await repo.contact_json(session, user_id)

        contact = await self.cache.get_or_load(user_id, load)
        if contact is None:
            raise user_not_found()
        return contact


def _email_taken() -> Conflict:
    return Conflict("an account with this email already exists", code="email_taken")


@dataclass
class Resources:
    """What a running user service holds open; closed in reverse on shutdown."""

    engine: AsyncEngine
    redis: Redis
    accounts: Accounts


@asynccontextmanager
async def open_accounts(settings: UserServiceSettings) -> AsyncIterator[Resources]:
    """Engine, Redis and the use cases over them; shared by the app's lifespan and the seed."""
    engine = create_engine(settings, application_name="user_service")
    redis = create_redis(settings)
    passwords = Passwords.from_settings(settings)
    accounts = Accounts(
        settings=settings,
        sessions=create_session_factory(engine),
        cache=ContactCache(
            redis, settings.redis_key_prefix, settings.user_contact_cache_ttl_seconds
        ),
        passwords=passwords,
        login_limiter=LoginLimiter(
            redis,
            settings.redis_key_prefix,
            settings.login_max_attempts,
            settings.login_window_seconds,
        ),
    )
    try:
        yield Resources(engine=engine, redis=redis, accounts=accounts)
    finally:
        await redis.aclose()
        await engine.dispose()
