"""The template use cases: save (new version, active), roll back, delete, find, render.

Routes translate HTTP into these calls; every write runs in one transaction that holds the
template row lock, so version numbers are taken one at a time. Template source comes from
users, so it is compiled and rendered only in the render pool's child processes
(`shared/render_pool.py`), never in this process.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.template_service import repository as repo
from services.template_service.errors import (
    RenderBusy,
    TemplateExists,
    TemplateNotFound,
    VersionNotFound,
    render_error,
)
from services.template_service.models import Template, TemplateVersion
from services.template_service.schemas import (
    ActivateRequest,
    CreatedOut,
    DeletedOut,
    LocaleOut,
    PreviewRequest,
    RenderOut,
    RenderRequest,
    TemplateCodeOut,
    TemplateCreate,
    TemplateDetail,
    TemplateOut,
    TemplateUpdate,
    VersionFields,
    VersionListItem,
    VersionOut,
)
from services.template_service.settings import TemplateSettings
from shared.db import session_scope
from shared.errors import ValidationFailed
from shared.locales import locale_chain, normalize_locale
from shared.render_pool import RenderPool, RenderPoolBusy
from shared.rendering import Analysis, RenderError, TemplateFields, channel_fields, nest_data


def version_out(template: Template, row: TemplateVersion) -> VersionOut:
    return VersionOut(
        code=template.code,
        channel=template.channel,  # type: ignore[arg-type]
        locale=row.locale,
        version=row.version,
        name=template.name,
        category=template.category,  # type: ignore[arg-type]
        subject=row.subject,
        text_body=row.text_body,
        html_body=row.html_body,
        title=row.title,
        body=row.body,
        data=row.data,
        image_url=row.image_url,
        variables=list(row.variables),
        link_variables=list(row.link_variables),
        created_by=row.created_by,
        created_at=row.created_at,
    )


def template_out(template: Template, locales: Sequence[tuple[str, int, int]]) -> TemplateOut:
    return TemplateOut(
        code=template.code,
        channel=template.channel,  # type: ignore[arg-type]
        name=template.name,
        category=template.category,  # type: ignore[arg-type]
        description=template.description,
        locales=[
            LocaleOut(locale=loc, active_version=a, latest_version=n) for loc, a, n in locales
        ],
        created_by=template.created_by,
        created_at=template.created_at,
        updated_at=template.updated_at,
    )


class TemplateRenderer:
    """The catalog's only way to compile or render: jobs go to the render pool, and its
    failures become the service's errors (422 with a stable code, 503 when it is saturated)."""

    def __init__(self, pool: RenderPool) -> None:
        self.pool = pool

    @classmethod
    def from_settings(cls, settings: TemplateSettings) -> TemplateRenderer:
        return cls(
            RenderPool(
                workers=settings.template_render_workers,
                memory_bytes=settings.template_render_memory_mb * 1024 * 1024,
                timeout_seconds=settings.template_render_timeout_seconds,
            )
        )

    async def start(self) -> None:
        await self.pool.start()

    async def close(self) -> None:
        await self.pool.close()

    async def prepare(self, body: VersionFields) -> tuple[dict[str, Any], Analysis]:
        """The stored values and what they need; refuses a body that does not fit its channel
        or does not compile (422 naming the field and line)."""
        fields = _fields_of(body)
        with _translated():
            return body.values(), await self.pool.analyse(fields)

    async def render(self, fields: TemplateFields, variables: Mapping[str, Any]) -> dict[str, Any]:
        with _translated():
            return nest_data(await self.pool.render(fields, variables))

    async def preview(self, body: PreviewRequest) -> tuple[Analysis, dict[str, Any]]:
        """Compile and render a draft in one job: one timeout bounds the whole preview."""
        fields = _fields_of(body)
        with _translated():
            analysis, rendered = await self.pool.preview(fields, body.variables)
        return analysis, nest_data(rendered)


def _fields_of(body: VersionFields) -> TemplateFields:
    errors = body.check_channel()
    if errors:
        raise ValidationFailed("the fields do not fit the channel", details=errors)
    return channel_fields(body.channel, body.values())


@contextmanager
def _translated() -> Iterator[None]:
    """The pool's failures as the service's errors."""
    try:
        yield
    except RenderError as exc:
        raise render_error(exc) from exc
    except RenderPoolBusy as exc:
        raise RenderBusy() from exc


async def _save_active_version(
    session: AsyncSession,
    template_id: uuid.UUID,
    locale: str,
    values: dict[str, Any],
    analysis: Analysis,
    created_by: str | None,
) -> TemplateVersion:
    """The next version number for (template, locale), saved and made active; the caller
    holds the template row lock, so numbers are taken one at a time."""
    number = await repo.next_version_number(session, template_id, locale)
    row = await repo.insert_version(
        session,
        template_id=template_id,
        locale=locale,
        version=number,
        values=values,
        variables=analysis.variables,
        link_variables=analysis.link_variables,
        created_by=created_by,
    )
    await repo.set_active(session, template_id, locale, number)
    return row


class TemplateCatalog:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        settings: TemplateSettings,
        renderer: TemplateRenderer,
    ) -> None:
        self.sessions = sessions
        self.default_locale = normalize_locale(settings.default_locale)
        self.renderer = renderer

    # --- writes ------------------------------------------------------------------------

    async def create(self, body: TemplateCreate, created_by: str | None) -> CreatedOut:
        values, analysis = await self.renderer.prepare(body)
        locale = body.locale or self.default_locale
        async with session_scope(self.sessions) as session:
            template = await repo.insert_template(
                session,
                code=body.code,
                channel=body.channel,
                name=body.name,
                description=body.description,
                category=body.category,
                created_by=created_by,
            )
            if template is None:
                template = await self._revive(session, body)
            row = await _save_active_version(
                session, template.id, locale, values, analysis, created_by
            )
            await session.refresh(template)
            locales = (await repo.locales_of(session, [template.id])).get(template.id, [])
            return CreatedOut(
                template=template_out(template, locales), version=version_out(template, row)
            )

    async def _revive(self, session: AsyncSession, body: TemplateCreate) -> Template:
        """(code, channel) is taken: 409 unless it was soft-deleted, which brings it back with
        its history (numbers continue, so pinned versions stay unambiguous)."""
        template = await repo.get_template(
            session, body.code, body.channel, include_deleted=True, for_update=True
        )
        if template is None or template.deleted_at is None:
            raise TemplateExists(f"template {body.code!r} ({body.channel}) exists")
        await repo.touch(
            session,
            template.id,
            deleted_at=None,
            name=body.name,
            description=body.description,
            category=body.category,
        )
        return template

    async def update(self, code: str, body: TemplateUpdate, created_by: str | None) -> VersionOut:
        values, analysis = await self.renderer.prepare(body)
        locale = body.locale or self.default_locale
        async with session_scope(self.sessions) as session:
            template = await self._template(session, code, body.channel, for_update=True)
            row = await _save_active_version(
                session, template.id, locale, values, analysis, created_by
            )
            changes = {
                k: v
                for k, v in (
                    ("name", body.name),
                    ("description", body.description),
                    ("category", body.category),
                )
                if v is not None
            }
            if changes:
                await repo.touch(session, template.id, **changes)
                await session.refresh(template)
            return version_out(template, row)

    async def activate(self, code: str, version: int, body: ActivateRequest) -> VersionOut:
        locale = body.locale or self.default_locale
        async with session_scope(self.sessions) as session:
            template = await self._template(session, code, body.channel, for_update=True)
            row = await repo.get_version(session, template.id, locale, version)
            if row is None:
                raise VersionNotFound(f"{code} ({body.channel}, {locale}) has no version {version}")
            await repo.set_active(session, template.id, locale, version)
            return version_out(template, row)

    async def delete(self, code: str, channel: str | None) -> DeletedOut:
        async with session_scope(self.sessions) as session:
            templates = [
                t
                for t in await repo.templates_by_code(session, code, for_update=True)
                if channel is None or t.channel == channel
            ]
            if not templates:
                raise TemplateNotFound(f"no template {code!r}")
            now = datetime.now(UTC)
            for template in templates:
                await repo.touch(session, template.id, deleted_at=now)
            return DeletedOut(code=code, channels=[t.channel for t in templates])

    # --- reads -------------------------------------------------------------------------

    async def list(
        self,
        *,
        channel: str | None,
        locale: str | None,
        code_prefix: str | None,
        page: int,
        limit: int,
        category: str | None = None,
    ) -> tuple[list[TemplateOut], int]:
        async with session_scope(self.sessions) as session:
            rows, total = await repo.list_templates(
                session,
                channel=channel,
                category=category,
                locale=locale,
                code_prefix=code_prefix,
                page=page,
                limit=limit,
            )
            locales = await repo.locales_of(session, [t.id for t in rows])
            return [template_out(t, locales.get(t.id, [])) for t in rows], total

    async def by_code(self, code: str, channel: str | None) -> TemplateCodeOut:
        async with session_scope(self.sessions) as session:
            templates = [
                t
                for t in await repo.templates_by_code(session, code)
                if channel is None or t.channel == channel
            ]
            if not templates:
                raise TemplateNotFound(f"no template {code!r}")
            locales = await repo.locales_of(session, [t.id for t in templates])
            details = []
            for template in templates:
                active = await repo.active_versions(session, template.id)
                details.append(
                    TemplateDetail(
                        **template_out(template, locales.get(template.id, [])).model_dump(),
                        active_versions=[version_out(template, r) for r in active.values()],
                    )
                )
            return TemplateCodeOut(code=code, channels=details)

    async def versions(
        self, code: str, channel: str, locale: str | None, page: int, limit: int
    ) -> tuple[list[VersionListItem], int]:
        async with session_scope(self.sessions) as session:
            template = await self._template(session, code, channel)
            rows, total = await repo.list_versions(
                session, template.id, locale=locale, page=page, limit=limit
            )
            active = await repo.active_numbers(session, template.id)
            items = [
                VersionListItem(
                    **version_out(template, r).model_dump(),
                    active=active.get(r.locale) == r.version,
                )
                for r in rows
            ]
            return items, total

    async def active(self, code: str, channel: str, locale: str | None) -> VersionOut:
        """The active version for the first locale of the fallback chain that has one."""
        chain = locale_chain(locale, self.default_locale)
        async with session_scope(self.sessions) as session:
            template = await self._template(session, code, channel)
            found = await repo.active_versions(session, template.id, chain)
            for candidate in chain:
                if candidate in found:
                    return version_out(template, found[candidate])
            raise TemplateNotFound(
                f"template {code!r} ({channel}) has no version for {' / '.join(chain)}"
            )

    async def version(
        self,
        code: str,
        channel: str,
        locale: str | None,
        version: int,
        *,
        include_deleted: bool,
    ) -> VersionOut:
        """Exactly that version; `include_deleted` serves notifications pinned before a delete."""
        locale = locale or self.default_locale
        async with session_scope(self.sessions) as session:
            template = await self._template(session, code, channel, include_deleted=include_deleted)
            row = await repo.get_version(session, template.id, locale, version)
            if row is None:
                raise VersionNotFound(f"{code} ({channel}, {locale}) has no version {version}")
            return version_out(template, row)

    async def render(self, code: str, body: RenderRequest) -> RenderOut:
        if body.version is not None:
            chosen = await self.version(
                code, body.channel, body.locale, body.version, include_deleted=False
            )
        else:
            chosen = await self.active(code, body.channel, body.locale)
        fields = channel_fields(chosen.channel, chosen.model_dump())
        rendered = await self.renderer.render(fields, body.variables)
        return RenderOut(
            code=code,
            channel=chosen.channel,
            locale=chosen.locale,
            version=chosen.version,
            rendered=rendered,
            variables=chosen.variables,
            link_variables=chosen.link_variables,
        )

    async def preview(self, body: PreviewRequest) -> RenderOut:
        analysis, rendered = await self.renderer.preview(body)
        return RenderOut(
            channel=body.channel,
            rendered=rendered,
            variables=analysis.variables,
            link_variables=analysis.link_variables,
        )

    async def _template(
        self,
        session: AsyncSession,
        code: str,
        channel: str,
        *,
        include_deleted: bool = False,
        for_update: bool = False,
    ) -> Template:
        template = await repo.get_template(
            session, code, channel, include_deleted=include_deleted, for_update=for_update
        )
        if template is None:
            raise TemplateNotFound(f"no template {code!r} for channel {channel}")
        return template
