"""HTTP routes: translate requests into catalog calls and results into the envelope."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, status

from services.template_service.deps import Admin, CatalogDep, Editor, Reader, RenderReader
from services.template_service.schemas import (
    ActivateRequest,
    Channel,
    CreatedOut,
    DeletedOut,
    PreviewRequest,
    RenderOut,
    RenderRequest,
    TemplateCodeOut,
    TemplateCreate,
    TemplateOut,
    TemplateUpdate,
    VersionListItem,
    VersionOut,
)
from shared.auth import require_internal_key
from shared.contracts import Category
from shared.envelope import Envelope, ok
from shared.errors import ValidationFailed, error_responses
from shared.locales import normalize_locale
from shared.pagination import PaginationQuery, page_of
from shared.template_client import CODE_PATTERN

Body = dict[str, Any]
CodePath = Annotated[str, Path(pattern=CODE_PATTERN, description="the template's slug")]
VersionPath = Annotated[int, Path(ge=1)]


def locale_query(
    locale: Annotated[str | None, Query(description="e.g. en, pt, pt-BR")] = None,
) -> str | None:
    if locale is None:
        return None
    try:
        return normalize_locale(locale)
    except ValueError as exc:
        raise ValidationFailed(details=[{"field": "locale", "message": str(exc)}]) from exc


Locale = Annotated[str | None, Depends(locale_query)]

_WHY = {
    400: "malformed JSON (`invalid_json`)",
    401: "missing or bad credentials (`unauthorized`, `invalid_token`, `invalid_internal_key`)",
    403: "needs an admin (`forbidden`)",
    429: "too many renders by this user this minute (`rate_limited`, with `Retry-After`)",
    503: "every template renderer is busy (`render_busy`, with `Retry-After`)",
    404: "no such template or version (`template_not_found`, `template_version_not_found`)",
    409: "the template exists (`template_exists`)",
    413: "body over the size limit (`payload_too_large`)",
    422: (
        "invalid input (`validation_error`), a template that does not compile "
        "(`template_syntax_error`), missing variables (`missing_variables`), a link variable "
        "that is not an http, https or mailto URL (`unsafe_link`) or a render that failed or "
        "ran out of budget (`template_render_failed`); `details` names the fields"
    ),
}


def answers(model: Any, *codes: int) -> dict[str, Any]:
    """A route's OpenAPI answers: its model inside the envelope, and every error it can give."""
    return {"response_model": Envelope[model], "responses": error_responses(_WHY, *codes)}


BODY = (400, 413)

router = APIRouter(prefix="/api/v1", tags=["templates"])


@router.post(
    "/templates",
    status_code=status.HTTP_201_CREATED,
    **answers(CreatedOut, *BODY, 401, 403, 409, 503),
    summary="Create a template with its first (active) version (admin)",
)
async def create_template(body: TemplateCreate, admin: Admin, catalog: CatalogDep) -> Body:
    created = await catalog.create(body, created_by=str(admin.user_id))
    return ok(created, "template created")


@router.get(
    "/templates",
    **answers(list[TemplateOut], 401),
    summary="List templates",
)
async def list_templates(
    _: Reader,
    catalog: CatalogDep,
    locale: Locale,
    pagination: PaginationQuery,
    channel: Channel | None = None,
    code: Annotated[str | None, Query(max_length=64, description="code prefix")] = None,
    category: Category | None = None,
) -> Body:
    items, total = await catalog.list(
        channel=channel,
        category=category,
        locale=locale,
        code_prefix=code,
        page=pagination.page,
        limit=pagination.limit,
    )
    return page_of(items, total, pagination, "templates")


@router.post(
    "/templates/preview",
    **answers(RenderOut, *BODY, 401, 403, 429, 503),
    summary="Render an unsaved draft (editors, i.e. admins; rate limited per user)",
)
async def preview_template(body: PreviewRequest, _: Editor, catalog: CatalogDep) -> Body:
    return ok(await catalog.preview(body), "preview rendered")


@router.get(
    "/templates/{code}",
    **answers(TemplateCodeOut, 401, 404),
    summary="A template's channels with the active version per locale",
)
async def get_template(
    code: CodePath, _: Reader, catalog: CatalogDep, channel: Channel | None = None
) -> Body:
    return ok(await catalog.by_code(code, channel), "template")


@router.put(
    "/templates/{code}",
    **answers(VersionOut, *BODY, 401, 403, 404, 503),
    summary="Save a new version for (channel, locale) and make it active (admin)",
)
async def update_template(
    code: CodePath, body: TemplateUpdate, admin: Admin, catalog: CatalogDep
) -> Body:
    saved = await catalog.update(code, body, created_by=str(admin.user_id))
    return ok(saved, "version saved")


@router.delete(
    "/templates/{code}",
    **answers(DeletedOut, 401, 403, 404),
    summary="Soft-delete a template (pinned versions keep rendering) (admin)",
)
async def delete_template(
    code: CodePath, _: Admin, catalog: CatalogDep, channel: Channel | None = None
) -> Body:
    return ok(await catalog.delete(code, channel), "template deleted")


@router.get(
    "/templates/{code}/versions",
    **answers(list[VersionListItem], 401, 404),
    summary="A template's version history, newest first",
)
async def list_versions(
    code: CodePath,
    channel: Channel,
    _: Reader,
    catalog: CatalogDep,
    locale: Locale,
    pagination: PaginationQuery,
) -> Body:
    items, total = await catalog.versions(code, channel, locale, pagination.page, pagination.limit)
    return page_of(items, total, pagination, "versions")


@router.post(
    "/templates/{code}/versions/{version}/activate",
    **answers(VersionOut, *BODY, 401, 403, 404),
    summary="Make an earlier (or later) version active: rollback (admin)",
)
async def activate_version(
    code: CodePath, version: VersionPath, body: ActivateRequest, _: Admin, catalog: CatalogDep
) -> Body:
    return ok(await catalog.activate(code, version, body), "activated")


@router.post(
    "/templates/{code}/render",
    **answers(RenderOut, *BODY, 401, 404, 429, 503),
    summary="Render the active (or a given) version with variables (rate limited per user)",
)
async def render_template(
    code: CodePath, body: RenderRequest, _: RenderReader, catalog: CatalogDep
) -> Body:
    return ok(await catalog.render(code, body), "rendered")


internal_router = APIRouter(
    prefix="/internal/v1", tags=["internal"], dependencies=[Depends(require_internal_key)]
)


@internal_router.get(
    "/templates/{code}/active",
    **answers(VersionOut, 401, 404),
    summary="The active version, locale fallback applied (pt-BR -> pt -> default)",
)
async def internal_active(
    code: CodePath, channel: Channel, catalog: CatalogDep, locale: Locale
) -> Body:
    return ok(await catalog.active(code, channel, locale), "version")


@internal_router.get(
    "/templates/{code}/versions/{version}",
    **answers(VersionOut, 401, 404),
    summary="Exactly that version, even of a soft-deleted template (immutable: cache it)",
)
async def internal_version(
    code: CodePath, version: VersionPath, channel: Channel, catalog: CatalogDep, locale: Locale
) -> Body:
    found = await catalog.version(code, channel, locale, version, include_deleted=True)
    return ok(found, "version")
