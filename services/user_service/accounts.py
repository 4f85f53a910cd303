"""The user service's use cases: registration, profile, preferences and devices (sessions and
tokens are `auth.py`).

Routes translate HTTP into these calls. Each call is one database transaction; the contact
cache is invalidated after the commit of anything that changes what the gateway reads, and
password hashing always happens outside a transaction (it is slow, and a held connection would
starve the pool under a burst of logins). A password change and an account deletion end every
token the user holds (`Auth.revoke_in`, then `Auth.announce` after the commit).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.user_service import repository as repo
from services.user_service.auth import Auth
from services.user_service.cache import ContactCache
from services.user_service.errors import (
    device_not_found,
    email_taken,
    invalid_current_password,
    user_not_found,
)
from services.user_service.models import Device, Preferences, User
from services.user_service.passwords import Passwords
from services.user_service.rate_limit import LoginThrottle
from services.user_service.schemas import (
    CategorySwitches,
    DeviceIn,
    PreferencesIn,
    UnsubscribeIn,
    UserCreate,
    UserUpdate,
    is_device_token,
)
from services.user_service.settings import UserServiceSettings
from services.user_service.tokens import SigningKeys
from shared.auth import Principal
from shared.contracts import ContactPreferences, QuietHours
from shared.db import create_engine, create_session_factory, session_scope
from shared.logging import fingerprint
from shared.redis import create_redis
from shared.token_versions import TokenVersionStore

_EMAIL_INDEX = "uq_users_email_lower"
security_log = logging.getLogger("user_service.security")


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
        email=preferences.email,
        push=preferences.push,
        quiet_hours=quiet_hours,
        categories=preferences.categories or {},  # type: ignore[arg-type]
    )


@dataclass
class Accounts:
    settings: UserServiceSettings
    sessions: async_sessionmaker[AsyncSession]
    cache: ContactCache
    passwords: Passwords
    throttle: LoginThrottle
    auth: Auth

    # --- users -----------------------------------------------------------------------------

    async def register(self, body: UserCreate, address: str) -> tuple[User, Preferences | None]:
        """Self-registration: limited per address, and the password must be strong."""
        await self.throttle.before_registration(address)
        await self.passwords.check_strength(body.password, [body.name, str(body.email)])
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
                raise email_taken()
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
                raise email_taken() from None
            raise
        if push_token is not None and previous_owner is not None:
            _log_device_moved(push_token, previous_owner, user.id)
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
        if body.password is not None or body.email is not None:
            await self._check_password_change(user_id, body, actor)
        if body.password is not None:
            await self.passwords.check_strength(body.password)
            changes["password_hash"] = await self.passwords.hash(body.password)
        version = None
        try:
            async with session_scope(self.sessions) as session:
                user = await repo.get_user(session, user_id)
                if user is None:
                    raise user_not_found()
                if changes:
                    user = await repo.update_user(session, user, changes)
                if body.password is not None:
                    version = await self.auth.revoke_in(session, user_id)
                    await session.refresh(user)  # the version bump expired the loaded row
                preferences = await repo.get_preferences(session, user_id)
        except IntegrityError as exc:
            if _EMAIL_INDEX in str(exc.orig):
                raise email_taken() from None
            raise
        if version is not None:
            await self.auth.announce(user_id, version)
        if changes:
            await self.cache.invalidate([user_id])
        return user, preferences

    async def _check_password_change(
        self, user_id: uuid.UUID, body: UserUpdate, actor: Principal
    ) -> None:
        """Owners prove they know the current password to change it or their email; an admin
        may change someone else's."""
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
            raise invalid_current_password()

    async def delete_user(self, user_id: uuid.UUID) -> None:
        """The account goes with its preferences, devices and refresh tokens; its access
        tokens stop working everywhere."""
        async with session_scope(self.sessions) as session:
            if not await repo.delete_user(session, user_id):
                raise user_not_found()
        await self.auth.announce(user_id, None)
        await self.cache.invalidate([user_id])

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
                categories=_switches(body.categories),
            )
        await self.cache.invalidate([user_id])
        return preferences_out(preferences)

    async def unsubscribe(self, user_id: uuid.UUID, body: UnsubscribeIn) -> ContactPreferences:
        """An unsubscribe link: `body.category` off on `body.channel`, every other switch
        kept. Idempotent; announced like every contact change, so gateways and workers skip
        that category from the next message on."""
        async with session_scope(self.sessions) as session:
            if not await repo.lock_user(session, user_id):
                raise user_not_found()
            preferences = await repo.opt_out(
                session, user_id, channel=body.channel, category=body.category
            )
        await self.cache.invalidate([user_id])
        return preferences_out(preferences)

    # --- devices ---------------------------------------------------------------------------

    async def add_device(self, user_id: uuid.UUID, body: DeviceIn) -> tuple[Device, bool]:
        """Idempotent for the token's owner: registering it again returns the same device.

        A token another user holds moves here and answers exactly like a new one, so the
        answer reveals nothing about other accounts; the move is a security event in the log
        (with the token's fingerprint, never the token). Past `MAX_DEVICES_PER_USER` the
        oldest devices are dropped.
        """
        async with session_scope(self.sessions) as session:
            if not await repo.lock_user(session, user_id):
                raise user_not_found()
            device, created, previous_owner = await repo.upsert_device(
                session, user_id, token=body.token, platform=body.platform
            )
            if created:
                await repo.drop_oldest_devices(
                    session, user_id, keep=self.settings.max_devices_per_user
                )
        if previous_owner is not None:
            _log_device_moved(body.token, previous_owner, user_id)
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
                raise device_not_found()
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


def _switches(categories: CategorySwitches | None) -> dict[str, dict[str, bool]] | None:
    if categories is None:
        return None
    return {name: {ch: on for ch, on in switches.items()} for name, switches in categories.items()}


def _log_device_moved(token: str, previous_owner: uuid.UUID, new_owner: uuid.UUID) -> None:
    security_log.warning(
        "device token %s moved from user %s to user %s",
        fingerprint(token),
        previous_owner,
        new_owner,
        extra={
            "event": "device_token_moved",
            "token_fingerprint": fingerprint(token),
            "from_user_id": str(previous_owner),
            "to_user_id": str(new_owner),
        },
    )


@dataclass
class Resources:
    """What a running user service holds open; closed in reverse on shutdown."""

    engine: AsyncEngine
    redis: Redis
    accounts: Accounts
    auth: Auth


@asynccontextmanager
async def open_accounts(
    settings: UserServiceSettings, keys: SigningKeys | None = None
) -> AsyncIterator[Resources]:
    """Engine, Redis and the use cases over them; shared by the app's lifespan and the seed.
    `keys`: the signing keys (the app loads them at creation); without them the use cases
    work but no token can be issued or verified, which is all the seed needs."""
    engine = create_engine(settings, application_name="user_service")
    redis = create_redis(settings)
    sessions = create_session_factory(engine)
    passwords = Passwords.from_settings(settings)
    throttle = LoginThrottle(redis, settings.redis_key_prefix, settings)
    # A version key outlives every access token it could refuse (see shared/token_versions).
    store = TokenVersionStore(
        redis, settings.redis_key_prefix, ttl_seconds=settings.access_token_ttl_seconds + 60
    )
    auth = Auth(settings, sessions, passwords, throttle, keys, store)
    accounts = Accounts(
        settings=settings,
        sessions=sessions,
        cache=ContactCache(
            redis, settings.redis_key_prefix, settings.user_contact_cache_ttl_seconds
        ),
        passwords=passwords,
        throttle=throttle,
        auth=auth,
    )
    try:
        yield Resources(engine=engine, redis=redis, accounts=accounts, auth=auth)
    finally:
        await redis.aclose()
        await engine.dispose()
