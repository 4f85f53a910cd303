"""Service-to-service and user authentication, shared by every service.

- The internal API key guards `/internal/...` routes and worker admin endpoints; it is compared
  in constant time and never logged.
- Access tokens are short-lived JWTs signed by the user service with Ed25519 (`EdDSA`, with a
  `kid`); any service verifies them with the public keys the user service publishes
  (`shared.token_keys`), so nothing else can mint one. The algorithm is pinned on decode, so
  `alg: none` and algorithm confusion are refused.
- Each token carries its user's token version (`ver`), checked on every request against the
  version the user service publishes (`shared.token_versions`), so a password change, an
  account deletion or an admin's revoke ends every token of that user everywhere at once.

A service that accepts user tokens opens one `TokenVerifier` in its lifespan
(`open_token_verifier`), keeps it on `app.state.token_verifier`, and declares
`CurrentPrincipal` / `AdminPrincipal` on its routes (or calls `decode_access_token`).
"""

from __future__ import annotations

import hmac
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Literal

import httpx
import jwt
from fastapi import Depends, Header, Request
from redis.asyncio import Redis

from shared.errors import DependencyUnavailable, Forbidden, Unauthorized
from shared.http_client import create_http_client, internal_headers
from shared.redis import create_redis
from shared.settings import Settings
from shared.token_keys import ALGORITHM, JWKS_PATH, JwksKeys, KeySource
from shared.token_versions import Lookup, TokenVersions, TokenVersionStore

Role = Literal["user", "admin"]
ROLES: tuple[Role, ...] = ("user", "admin")
REQUIRED_CLAIMS = ["sub", "role", "ver", "iat", "exp"]
# Clocks of different hosts disagree a little; a token is not refused for a few seconds' skew.
LEEWAY_SECONDS = 30


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


# --- access tokens ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenVerifier:
    """What checking an access token needs: the signing keys and the users' token versions."""

    keys: KeySource
    versions: TokenVersions


def _invalid() -> Unauthorized:
    return Unauthorized("the access token is invalid", code="invalid_token")


async def decode_access_token(verifier: TokenVerifier, token: str) -> Principal:
    """The principal of a valid, unrevoked access token; 401 `invalid_token`,
    `token_expired` or `token_revoked` otherwise (503 if it cannot be checked right now)."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise _invalid() from exc
    kid = header.get("kid")
    if header.get("alg") != ALGORITHM or not isinstance(kid, str):
        raise _invalid()
    key = await verifier.keys.key_for(kid)
    if key is None:
        raise _invalid()
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            leeway=LEEWAY_SECONDS,
            options={"require": REQUIRED_CLAIMS},
        )
    except jwt.ExpiredSignatureError as exc:
        raise Unauthorized("the access token has expired", code="token_expired") from exc
    except jwt.PyJWTError as exc:
        raise _invalid() from exc
    role, version = claims["role"], claims["ver"]
    if role not in ROLES or not isinstance(version, int) or isinstance(version, bool):
        raise _invalid()
    try:
        user_id = uuid.UUID(str(claims["sub"]))
    except ValueError as exc:
        raise _invalid() from exc
    if await verifier.versions.current(user_id) != version:
        raise Unauthorized("the access token has been revoked", code="token_revoked")
    return Principal(user_id=user_id, role=role)


def user_service_lookup(client: httpx.AsyncClient, settings: Settings) -> Lookup:
    """Ask the user service for a token version (it reads its database and refills Redis)."""
    headers = internal_headers(settings)

    async def lookup(user_id: uuid.UUID) -> int | None:
        try:
            response = await client.get(
                f"/internal/v1/users/{user_id}/token-version", headers=headers
            )
        except httpx.HTTPError as exc:
            raise _cannot_check() from exc
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise _cannot_check()
        version: int = response.json()["data"]["token_version"]
        return version

    return lookup


def _cannot_check() -> DependencyUnavailable:
    return DependencyUnavailable(
        "cannot check the access token: the user service is unavailable",
        headers={"Retry-After": "1"},
    )


@asynccontextmanager
async def open_token_verifier(
    settings: Settings, *, redis: Redis | None = None
) -> AsyncIterator[TokenVerifier]:
    """A verifier for a service other than the user service: keys from the user service's
    JWKS, versions from Redis with the user service as fallback. Pass the service's Redis
    client if it has one; otherwise one is opened (and closed) here."""
    client = create_http_client(settings, base_url=settings.user_service_url, max_connections=20)
    own_redis = redis is None
    redis_client = create_redis(settings) if redis is None else redis
    try:
        yield TokenVerifier(
            keys=JwksKeys(
                client,
                JWKS_PATH,
                cache_seconds=settings.jwks_cache_seconds,
                refetch_min_seconds=settings.jwks_refetch_min_seconds,
            ),
            versions=TokenVersions(
                TokenVersionStore(redis_client, settings.redis_key_prefix),
                lookup=user_service_lookup(client, settings),
                cache_seconds=settings.token_version_cache_seconds,
            ),
        )
    finally:
        await client.aclose()
        if own_redis:
            await redis_client.aclose()


# --- FastAPI dependencies --------------------------------------------------------------------


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
    verifier: TokenVerifier = request.app.state.token_verifier
    return await decode_access_token(verifier, token)


async def require_admin(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
    if not principal.is_admin:
        raise Forbidden("this needs an admin", code="forbidden")
    return principal


InternalKey = Annotated[None, Depends(require_internal_key)]
CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
AdminPrincipal = Annotated[Principal, Depends(require_admin)]
