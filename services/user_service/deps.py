"""Dependencies the routes share, declared once as `Annotated` aliases."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Request

from services.user_service.accounts import Accounts
from services.user_service.auth import Auth
from shared.auth import CurrentPrincipal
from shared.errors import Forbidden


def get_accounts(request: Request) -> Accounts:
    accounts: Accounts = request.app.state.accounts
    return accounts


def get_auth(request: Request) -> Auth:
    auth: Auth = request.app.state.auth
    return auth


def client_address(request: Request) -> str:
    """The caller's address as uvicorn reports it: the peer, or what a trusted proxy
    (`FORWARDED_ALLOW_IPS`) forwarded. Never read from request headers here."""
    return request.client.host if request.client else "unknown"


AccountsDep = Annotated[Accounts, Depends(get_accounts)]
AuthDep = Annotated[Auth, Depends(get_auth)]
ClientAddress = Annotated[str, Depends(client_address)]


async def reachable_user_id(user_id: uuid.UUID, principal: CurrentPrincipal) -> uuid.UUID:
    """A user reaches only themself; an admin reaches anyone. Checked before existence, so a
    user cannot probe which ids exist."""
    if not principal.is_admin and principal.user_id != user_id:
        raise Forbidden("you may only access your own account", code="forbidden")
    return user_id


ReachableUserId = Annotated[uuid.UUID, Depends(reachable_user_id)]
