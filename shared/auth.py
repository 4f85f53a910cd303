"""Service-to-service and user authentication helpers shared by every service.

- The internal API key guards `/internal/...` routes and worker admin endpoints; it is compared
  in constant time and never logged.
- Access tokens are HS256 JWTs issued by the user service and verified by any service that
  needs a user (the template service checks the `admin` role for writes). The algorithm is
  pinned on decode, so `alg: none` and algorithm confusion are refused.
"""

from __future__ import annotations

import hmac
import time
import uuid
from dataclasses import dataclass
from typing import Annotated, Literal

import jwt
from fastapi import Depends, Header, Request

from shared.errors import Forbidden, Unauthorized
from shared.settings import Settings

Role = Literal["user", "admin"]


@dataclass(frozen=True)
class Principal:
    user_id: uuid.UUID
    role: Role

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def internal_key_matches(settings: Settings, presented: str | None) -> bool:
    expected = settings.internal_api_key.get_secret_value().encode()
    return presented is not None and hmac.compare_digest(presented.encode(), expected)


def issue_access_token(settings: Settings, user_id: uuid.UUID, role: Role) -> tuple[str, int]:
    now = int(time.time())
    ttl = settings.jwt_ttl_seconds
    claims = {"sub": str(user_id), "role": role, "iat": now, "exp": now + ttl}
    token = jwt.encode(
        claims, settings.jwt_secret.get_secret_value(), algorithm=settings.jwt_algorithm
    )
    return token, ttl


def decode_access_token(settings: Settings, token: str) -> Principal:
    try:
        claims = jwt.decode(
            token,
            settings.jwt_secret.get_secret_value(),
            algorithms=[settings.jwt_algorithm],
            options={"require": ["exp", "iat", "sub", "role"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise Unauthorized("the access token has expired", code="token_expired") from exc
    except jwt.PyJWTError as exc:
        raise Unauthorized("the access token is invalid", code="invalid_token") from exc
    role = claims.get("role")
    try:
        user_id = uuid.UUID(str(claims["sub"]))
    except ValueError as exc:
        raise Unauthorized("the access token is invalid", code="invalid_token") from exc
    if role not in ("user", "admin"):
        raise Unauthorized("the access token is invalid", code="invalid_token")
    return Principal(user_id=user_id, role=role)


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def settings_from(request: Request) -> Settings:
    """Every app keeps its settings on `app.state.settings` (set by its `create_app`)."""
    settings: Settings = request.app.state.settings
    return settings


async def require_internal_key(
    request: Request,
    x_internal_api_key: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> None:
    if not internal_key_matches(settings_from(request), x_internal_api_key):
        raise Unauthorized("a valid X-Internal-API-Key is required", code="invalid_internal_key")


async def current_principal(
    request: Request,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Principal:
    token = bearer_token(authorization)
    if token is None:
        raise Unauthorized("a bearer access token is required", code="unauthorized")
    return decode_access_token(settings_from(request), token)


async def require_admin(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
    if not principal.is_admin:
        raise Forbidden("this needs an admin", code="forbidden")
    return principal


InternalKey = Annotated[None, Depends(require_internal_key)]
CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
AdminPrincipal = Annotated[Principal, Depends(require_admin)]
