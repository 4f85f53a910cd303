"""SQL of the user service. Functions take a session and never commit: the caller owns the
transaction (see `accounts.py`), so one use case is one transaction."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, time
from typing import Any

import orjson
from sqlalchemy import JSON, delete, func, literal_column, select, update
from sqlalchemy.dialects.postgresql import aggregate_order_by, insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.user_service.models import Device, Preferences, RefreshToken, User


def _email_matches(email: str) -> Any:
    # Written as `lower(email)` so PostgreSQL uses the unique index `uq_users_email_lower`.
    return func.lower(User.email) == email.strip().lower()


async def get_user(session: AsyncSession, user_id: uuid.UUID) -> User | None:
    return await session.get(User, user_id)


async def lock_user(session: AsyncSession, user_id: uuid.UUID) -> bool:
    """Whether the user exists, holding a key-share lock until the transaction ends, so a
    concurrent delete waits instead of turning our insert into a foreign-key error."""
    result = await session.execute(
        select(User.id).where(User.id == user_id).with_for_update(key_share=True)
    )
    return result.first() is not None


async def get_user_by_email(session: AsyncSession, email: str) -> User | None:
    result = await session.execute(select(User).where(_email_matches(email)))
    return result.scalar_one_or_none()


async def email_exists(session: AsyncSession, email: str) -> bool:
    result = await session.execute(select(User.id).where(_email_matches(email)))
    return result.first() is not None


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def list_users(
    session: AsyncSession, *, email: str | None, page: int, limit: int
) -> tuple[Sequence[User], int]:
    query = select(User)
    if email:
        query = query.where(User.email.ilike(f"%{_escape_like(email)}%", escape="\\"))
    total = await session.scalar(select(func.count()).select_from(query.subquery()))
    rows = await session.scalars(
        query.order_by(User.created_at, User.id).offset((page - 1) * limit).limit(limit)
    )
    return rows.all(), int(total or 0)


async def insert_user(
    session: AsyncSession,
    *,
    name: str,
    email: str,
    password_hash: str,
    role: str = "user",
    locale: str = "en",
    timezone: str = "UTC",
) -> User:
    """Raises `IntegrityError` (on flush) when the email is taken, even by a concurrent insert."""
    user = User(
        id=uuid.uuid4(),
        name=name,
        email=email,
        password_hash=password_hash,
        role=role,
        locale=locale,
        timezone=timezone,
    )
    session.add(user)
    await session.flush()
    await session.refresh(user)
    return user


async def update_user(session: AsyncSession, user: User, changes: dict[str, Any]) -> User:
    for name, value in changes.items():
        setattr(user, name, value)
    await session.flush()
    await session.refresh(user)
    return user


async def delete_user(session: AsyncSession, user_id: uuid.UUID) -> bool:
    """Preferences and devices go with the user (ON DELETE CASCADE)."""
    result = await session.execute(delete(User).where(User.id == user_id).returning(User.id))
    return result.first() is not None


# --- token versions and refresh tokens ------------------------------------------------------


async def get_token_version(session: AsyncSession, user_id: uuid.UUID) -> int | None:
    return await session.scalar(select(User.token_version).where(User.id == user_id))


async def bump_token_version(session: AsyncSession, user_id: uuid.UUID) -> int | None:
    """Invalidate every access token of the user; the new version, or None if no such user."""
    return await session.scalar(
        update(User)
        .where(User.id == user_id)
        .values(token_version=User.token_version + 1)
        .returning(User.token_version)
    )


async def insert_refresh_token(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    family_id: uuid.UUID,
    token_hash: bytes,
    expires_at: datetime,
) -> None:
    session.add(
        RefreshToken(
            id=uuid.uuid4(),
            user_id=user_id,
            family_id=family_id,
            token_hash=token_hash,
            expires_at=expires_at,
        )
    )
    await session.flush()


async def lock_refresh_token(session: AsyncSession, token_hash: bytes) -> RefreshToken | None:
    """The token row, locked, so two concurrent uses of one token are decided one at a time."""
    result = await session.execute(
        select(RefreshToken).where(RefreshToken.token_hash == token_hash).with_for_update()
    )
    return result.scalar_one_or_none()


async def mark_refresh_token_used(session: AsyncSession, token_id: uuid.UUID) -> None:
    await session.execute(
        update(RefreshToken).where(RefreshToken.id == token_id).values(used_at=func.now())
    )


async def revoke_refresh_family(session: AsyncSession, family_id: uuid.UUID) -> None:
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=func.now())
    )


async def revoke_refresh_tokens_of(session: AsyncSession, user_id: uuid.UUID) -> None:
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=func.now())
    )


async def delete_expired_refresh_tokens(session: AsyncSession, user_id: uuid.UUID) -> None:
    """Housekeeping at each login: a user's expired rows are of no more use."""
    await session.execute(
        delete(RefreshToken).where(
            RefreshToken.user_id == user_id, RefreshToken.expires_at < func.now()
        )
    )


async def get_preferences(session: AsyncSession, user_id: uuid.UUID) -> Preferences | None:
    return await session.get(Preferences, user_id)


async def put_preferences(
    session: AsyncSession,
    user_id: uuid.UUID,
    *,
    email: bool,
    push: bool,
    quiet_hours: tuple[time, time] | None,
    categories: dict[str, dict[str, bool]] | None = None,
) -> Preferences:
    """Set the switches; `categories` None keeps the stored ones (a client that predates them
    must not turn back on what an unsubscribe link turned off)."""
    start, end = quiet_hours if quiet_hours else (None, None)
    values: dict[str, Any] = {
        "email": email,
        "push": push,
        "quiet_hours_start": start,
        "quiet_hours_end": end,
    }
    if categories is not None:
        values["categories"] = categories
    statement = (
        insert(Preferences)
        .values(user_id=user_id, **values)
        .on_conflict_do_update(
            index_elements=[Preferences.user_id], set_={**values, "updated_at": func.now()}
        )
        .returning(Preferences)
    )
    result = await session.execute(statement, execution_options={"populate_existing": True})
    preferences: Preferences = result.scalar_one()
    return preferences


async def opt_out(
    session: AsyncSession, user_id: uuid.UUID, *, channel: str, category: str
) -> Preferences:
    """Turn `category` off on `channel`, keeping every other switch; the same again changes
    nothing. One statement, so two concurrent opt-outs of one user both hold."""
    switch = {category: {channel: False}}
    merged = Preferences.categories.op("||")(
        func.jsonb_build_object(
            category,
            func.coalesce(
                Preferences.categories.op("->")(category), literal_column("'{}'::jsonb")
            ).op("||")(func.jsonb_build_object(channel, False)),
        )
    )
    statement = (
        insert(Preferences)
        .values(user_id=user_id, categories=switch)
        .on_conflict_do_update(
            index_elements=[Preferences.user_id],
            set_={"categories": merged, "updated_at": func.now()},
        )
        .returning(Preferences)
    )
    result = await session.execute(statement, execution_options={"populate_existing": True})
    preferences: Preferences = result.scalar_one()
    return preferences


async def get_device_by_token(session: AsyncSession, token: str) -> Device | None:
    result = await session.execute(select(Device).where(Device.token == token).with_for_update())
    return result.scalar_one_or_none()


async def upsert_device(
    session: AsyncSession, user_id: uuid.UUID, *, token: str, platform: str
) -> tuple[Device, bool, uuid.UUID | None]:
    """Register `token` for `user_id`: `(device, created, previous_owner)`.

    A token names one app install, so if another user had it, it moves to this user (the
    install changed accounts) and `previous_owner` says whose cache to invalidate. The moved
    device is a new row (new id and `created_at`), so the answer is exactly that of a first
    registration and tells the caller nothing about the previous owner. `created` is False
    only when this user had the token already.
    """
    existing = await get_device_by_token(session, token)
    previous = None
    if existing is not None:
        if existing.user_id == user_id:
            if existing.platform != platform:
                await session.execute(
                    update(Device)
                    .where(Device.id == existing.id)
                    .values(platform=platform, updated_at=func.now())
                )
                await session.refresh(existing)
            return existing, False, None
        previous = existing.user_id
        await session.execute(delete(Device).where(Device.id == existing.id))
    # A concurrent registration of the same token may win between the select and here.
    statement: Any = (
        insert(Device)
        .values(id=uuid.uuid4(), user_id=user_id, token=token, platform=platform)
        .on_conflict_do_update(
            index_elements=[Device.token],
            set_={"user_id": user_id, "platform": platform, "updated_at": func.now()},
        )
        .returning(Device, literal_column("xmax = 0").label("inserted"))
    )
    result = await session.execute(statement, execution_options={"populate_existing": True})
    device, inserted = result.one()
    return device, bool(inserted) or previous is not None, previous


async def drop_oldest_devices(session: AsyncSession, user_id: uuid.UUID, keep: int) -> int:
    """Keep the user's `keep` newest devices; returns how many older ones went."""
    newest = (
        select(Device.id)
        .where(Device.user_id == user_id)
        .order_by(Device.created_at.desc(), Device.id.desc())
        .limit(keep)
    )
    result = await session.execute(
        delete(Device)
        .where(Device.user_id == user_id, Device.id.not_in(newest))
        .returning(Device.id)
    )
    return len(result.all())


async def list_devices(
    session: AsyncSession, user_id: uuid.UUID, *, page: int, limit: int
) -> tuple[Sequence[Device], int]:
    total = await session.scalar(
        select(func.count()).select_from(Device).where(Device.user_id == user_id)
    )
    rows = await session.scalars(
        select(Device)
        .where(Device.user_id == user_id)
        .order_by(Device.created_at, Device.id)
        .offset((page - 1) * limit)
        .limit(limit)
    )
    return rows.all(), int(total or 0)


async def delete_device(session: AsyncSession, user_id: uuid.UUID, device_id: uuid.UUID) -> bool:
    result = await session.execute(
        delete(Device).where(Device.id == device_id, Device.user_id == user_id).returning(Device.id)
    )
    return result.first() is not None


async def delete_device_by_token(session: AsyncSession, token: str) -> uuid.UUID | None:
    """Remove a dead token; returns its owner (to invalidate), or None if it was gone."""
    result = await session.execute(
        delete(Device).where(Device.token == token).returning(Device.user_id)
    )
    return result.scalar_one_or_none()


def _hhmm(value: time | None) -> str | None:
    return value.strftime("%H:%M") if value is not None else None


async def contact_json(session: AsyncSession, user_id: uuid.UUID) -> bytes | None:
    """The contact record as JSON, in one statement: the user by primary key, preferences by
    primary key, devices through `ix_devices_user_id`."""
    device = func.json_build_object("token", Device.token, "platform", Device.platform)
    devices = (
        select(
            func.coalesce(
                func.json_agg(aggregate_order_by(device, Device.created_at)),
                literal_column("'[]'::json"),
                type_=JSON,
            )
        )
        .where(Device.user_id == User.id)
        .scalar_subquery()
    )
    statement = (
        select(
            User.id,
            User.name,
            User.email,
            User.locale,
            User.timezone,
            Preferences.email,
            Preferences.push,
            Preferences.quiet_hours_start,
            Preferences.quiet_hours_end,
            Preferences.categories,
            devices,
        )
        .outerjoin(Preferences, Preferences.user_id == User.id)
        .where(User.id == user_id)
    )
    row = (await session.execute(statement)).first()
    if row is None:
        return None
    (uid, name, email, locale, timezone, p_email, p_push, qh_start, qh_end, p_categories) = row[:10]
    device_rows = row[10]
    quiet_hours = (
        {"start": _hhmm(qh_start), "end": _hhmm(qh_end)}
        if qh_start is not None and qh_end is not None
        else None
    )
    contact = {
        "user_id": str(uid),
        "name": name,
        "email": email,
        "locale": locale,
        "timezone": timezone,
        # A user without a preferences row (none is ever made that way) keeps the defaults.
        "preferences": {
            "email": True if p_email is None else p_email,
            "push": True if p_push is None else p_push,
            "quiet_hours": quiet_hours,
            "categories": p_categories or {},
        },
        "devices": device_rows or [],
    }
    return orjson.dumps(contact)
