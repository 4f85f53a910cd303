"""Dependencies the routes declare once: who may read, who may write, and the catalog."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from services.template_service.catalog import TemplateCatalog
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


Reader = Annotated[Principal | None, Depends(require_reader)]
Admin = AdminPrincipal
CatalogDep = Annotated[TemplateCatalog, Depends(get_catalog)]
