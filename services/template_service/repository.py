"""Queries over the template tables. Plain functions over an `AsyncSession`; the caller owns
the transaction (`shared.db.session_scope`)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.template_service.models import Template, TemplateLocale, TemplateVersion


def _escape_like(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def get_template(
    session: AsyncSession,
    code: str,
    channel: str,
    *,
    include_deleted: bool = False,
    for_update: bool = False,
) -> Template | None:
    query = select(Template).where(Template.code == code, Template.channel == channel)
    if not include_deleted:
        query = query.where(Template.deleted_at.is_(None))
    if for_update:
        # The lock that serialises saves of one template: version numbers are taken under it.
        query = query.with_for_update()
    result: Template | None = (await session.execute(query)).scalar_one_or_none()
    return result


async def templates_by_code(
    session: AsyncSession, code: str, *, for_update: bool = False
) -> Sequence[Template]:
    query = (
        select(Template)
        .where(Template.code == code, Template.deleted_at.is_(None))
        .order_by(Template.channel)
    )
    if for_update:
        query = query.with_for_update()
    return (await session.execute(query)).scalars().all()


def _filtered(
    query: Select[Any],
    channel: str | None,
    locale: str | None,
    code_prefix: str | None,
    category: str | None = None,
) -> Select[Any]:
    query = query.where(Template.deleted_at.is_(None))
    if channel:
        query = query.where(Template.channel == channel)
    if category:
        query = query.where(Template.category == category)
    if code_prefix:
        query = query.where(Template.code.like(_escape_like(code_prefix) + "%", escape="\\"))
    if locale:
        query = query.where(
            select(TemplateLocale.template_id)
            .where(TemplateLocale.template_id == Template.id, TemplateLocale.locale == locale)
            .exists()
        )
    return query


async def list_templates(
    session: AsyncSession,
    *,
    channel: str | None,
    locale: str | None,
    code_prefix: str | None,
    page: int,
    limit: int,
    category: str | None = None,
) -> tuple[Sequence[Template], int]:
    total = await session.scalar(
        _filtered(
            select(func.count()).select_from(Template), channel, locale, code_prefix, category
        )
    )
    rows = (
        (
            await session.execute(
                _filtered(select(Template), channel, locale, code_prefix, category)
                .order_by(Template.code, Template.channel)
                .offset((page - 1) * limit)
                .limit(limit)
            )
        )
        .scalars()
        .all()
    )
    return rows, int(total or 0)


async def locales_of(
    session: AsyncSession, template_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[tuple[str, int, int]]]:
    """(locale, active version, latest version) per template, sorted by locale."""
    if not template_ids:
        return {}
    latest = (
        select(
            TemplateVersion.template_id,
            TemplateVersion.locale,
            func.max(TemplateVersion.version).label("latest"),
        )
        .where(TemplateVersion.template_id.in_(template_ids))
        .group_by(TemplateVersion.template_id, TemplateVersion.locale)
        .subquery()
    )
    rows = await session.execute(
        select(
            TemplateLocale.template_id,
            TemplateLocale.locale,
            TemplateLocale.active_version,
            latest.c.latest,
        )
        .join(
            latest,
            (latest.c.template_id == TemplateLocale.template_id)
            & (latest.c.locale == TemplateLocale.locale),
        )
        .where(TemplateLocale.template_id.in_(template_ids))
        .order_by(TemplateLocale.locale)
    )
    found: dict[uuid.UUID, list[tuple[str, int, int]]] = {}
    for template_id, locale, active, newest in rows:
        found.setdefault(template_id, []).append((locale, active, newest))
    return found


async def insert_template(
    session: AsyncSession,
    *,
    code: str,
    channel: str,
    name: str,
    description: str | None,
    category: str,
    created_by: str | None,
) -> Template | None:
    """A new template row, or None when (code, channel) is taken (even by a deleted one)."""
    template_id = uuid.uuid4()
    inserted = await session.execute(
        insert(Template)
        .values(
            id=template_id,
            code=code,
            channel=channel,
            name=name,
            description=description,
            category=category,
            created_by=created_by,
        )
        .on_conflict_do_nothing(constraint="uq_templates_code_channel")
        .returning(Template.id)
    )
    if inserted.scalar_one_or_none() is None:
        return None
    return await session.get(Template, template_id)


async def next_version_number(session: AsyncSession, template_id: uuid.UUID, locale: str) -> int:
    """Call with the template row locked (`get_template(..., for_update=True)`)."""
    current = await session.scalar(
        select(func.max(TemplateVersion.version)).where(
            TemplateVersion.template_id == template_id, TemplateVersion.locale == locale
        )
    )
    return int(current or 0) + 1


async def insert_version(
    session: AsyncSession,
    *,
    template_id: uuid.UUID,
    locale: str,
    version: int,
    values: dict[str, Any],
    variables: list[str],
    link_variables: list[str],
    created_by: str | None,
) -> TemplateVersion:
    row = TemplateVersion(
        template_id=template_id,
        locale=locale,
        version=version,
        variables=variables,
        link_variables=link_variables,
        created_by=created_by,
        **values,
    )
    session.add(row)
    await session.flush()
    await session.refresh(row)
    return row


async def set_active(
    session: AsyncSession, template_id: uuid.UUID, locale: str, version: int
) -> None:
    now = datetime.now(UTC)
    await session.execute(
        insert(TemplateLocale)
        .values(template_id=template_id, locale=locale, active_version=version, updated_at=now)
        .on_conflict_do_update(
            index_elements=[TemplateLocale.template_id, TemplateLocale.locale],
            set_={"active_version": version, "updated_at": now},
        )
    )
    await touch(session, template_id)


async def touch(session: AsyncSession, template_id: uuid.UUID, **values: Any) -> None:
    await session.execute(
        update(Template)
        .where(Template.id == template_id)
        .values(updated_at=datetime.now(UTC), **values)
    )


async def get_version(
    session: AsyncSession, template_id: uuid.UUID, locale: str, version: int
) -> TemplateVersion | None:
    result: TemplateVersion | None = (
        await session.execute(
            select(TemplateVersion).where(
                TemplateVersion.template_id == template_id,
                TemplateVersion.locale == locale,
                TemplateVersion.version == version,
            )
        )
    ).scalar_one_or_none()
    return result


async def active_versions(
    session: AsyncSession, template_id: uuid.UUID, locales: Sequence[str] | None = None
) -> dict[str, TemplateVersion]:
    """The active version of each locale of a template (only `locales`, when given)."""
    query = (
        select(TemplateVersion)
        .join(
            TemplateLocale,
            (TemplateLocale.template_id == TemplateVersion.template_id)
            & (TemplateLocale.locale == TemplateVersion.locale)
            & (TemplateLocale.active_version == TemplateVersion.version),
        )
        .where(TemplateVersion.template_id == template_id)
        .order_by(TemplateVersion.locale)
    )
    if locales is not None:
        query = query.where(TemplateVersion.locale.in_(locales))
    rows = (await session.execute(query)).scalars().all()
    return {row.locale: row for row in rows}


async def list_versions(
    session: AsyncSession,
    template_id: uuid.UUID,
    *,
    locale: str | None,
    page: int,
    limit: int,
) -> tuple[Sequence[TemplateVersion], int]:
    condition = [TemplateVersion.template_id == template_id]
    if locale:
        condition.append(TemplateVersion.locale == locale)
    total = await session.scalar(
        select(func.count()).select_from(TemplateVersion).where(*condition)
    )
    rows = (
        (
            await session.execute(
                select(TemplateVersion)
                .where(*condition)
                .order_by(TemplateVersion.locale, TemplateVersion.version.desc())
                .offset((page - 1) * limit)
                .limit(limit)
            )
        )
        .scalars()
        .all()
    )
    return rows, int(total or 0)


async def active_numbers(session: AsyncSession, template_id: uuid.UUID) -> dict[str, int]:
    rows = await session.execute(
        select(TemplateLocale.locale, TemplateLocale.active_version).where(
            TemplateLocale.template_id == template_id
        )
    )
    return {locale: version for locale, version in rows}
