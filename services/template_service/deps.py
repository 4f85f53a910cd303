"""Dependencies the routes declare once: who may read, who may write or preview, and the
catalog.

An editor is a user with the `admin` role: the people who may save templates are the ones who
need to preview drafts, so there is no separate role to hand out and revoke.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from services.template_service.catalog import TemplateCatalog
from services.template_service.rate_limit import RenderLimiter
from shared.auth import (
    AdminPrincipal,
    Principal,
    current_principal,
    internal_key_matches,
    settings_from,
)
from shared.errors import Unauthorized


async def require_reader(
    request: Request,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
    x_internal_api_key: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Principal | None:
    """Reads need any valid access token, or the internal key (workers, the gateway)."""
    if x_internal_api_key is not None:
        if internal_key_matches(settings_from(request), x_internal_api_key):
            return None
        raise Unauthorized("a valid X-Internal-API-Key is required", code="invalid_internal_key")
    return await current_principal(request, authorization)


def get_catalog(request: Request) -> TemplateCatalog:
    catalog: TemplateCatalog = request.app.state.catalog
    return catalog


async def limit_renders(request: Request, principal: Principal | None) -> None:
    """Renders of a caller's input count against that user's per-minute budget; the internal
    key (the gateway, the workers) is not limited."""
    if principal is not None:
        limiter: RenderLimiter = request.app.state.render_limiter
        await limiter.check(principal.user_id)


async def require_editor(request: Request, admin: AdminPrincipal) -> Principal:
    """Previews render arbitrary source: editors (admins) only, within their render budget."""
    await limit_renders(request, admin)
    return admin


async def require_renderer(
    request: Request, reader: Annotated[Principal | None, Depends(require_reader)]
) -> Principal | None:
    """Rendering a saved version: any reader, users within their render budget."""
    await limit_renders(request, reader)
    return reader


Reader = Annotated[Principal | None, Depends(require_reader)]
Admin = AdminPrincipal
Editor = Annotated[Principal, Depends(require_editor)]
RenderReader = Annotated[Principal | None, Depends(require_renderer)]
CatalogDep = Annotated[TemplateCatalog, Depends(get_catalog)]
