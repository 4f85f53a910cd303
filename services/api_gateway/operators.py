"""Who may operate the system: the operator API (`/v1/admin/...`) and the console (`/console`).

An operator is either
- a client holding an API key with the `admin` scope (`Authorization: Bearer <key>`: the CLI
  and scripts), or
- an account of the user service with role `admin`, by its access token: as a bearer token,
  or in the console's session cookie.

Access tokens are verified only by `shared.auth.decode_access_token`; this module decides what
a verified principal may do. An API key never contains a dot and a JWT always has two, so the
bearer's shape says which of the two to check.

The console's cookie carries the access token (HttpOnly, SameSite=Strict, Secure in production
or over https). Every state-changing request made with the cookie needs a CSRF token: an HMAC
of the session's random nonce (a second HttpOnly cookie) and the access token, sent as the
form field `csrf_token` or the header `X-CSRF-Token`. A page embeds the token; another site can
neither read it nor compute it. The HMAC key is derived from `INTERNAL_API_KEY`, so every
gateway replica accepts the tokens of the others without another secret to distribute.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.api_gateway.api_keys import ApiKeyStore
from shared.auth import Principal, TokenVerifier, decode_access_token
from shared.errors import AppError, Forbidden, Unauthorized
from shared.settings import Settings

SESSION_COOKIE = "console_session"
NONCE_COOKIE = "console_nonce"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
ADMIN_SCOPE = "admin"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Operator:
    """A verified admin. `access_token` is set for a user, so calls made on their behalf (the
    template service's admin API) carry their own identity."""

    name: str
    access_token: str | None = None
    via_cookie: bool = False


class CsrfFailed(AppError):
    status_code, code, message = 403, "csrf_failed", "the form is stale; reload the page"


class OperatorAuth:
    def __init__(self, settings: Settings, api_keys: ApiKeyStore, tokens: TokenVerifier) -> None:
        self.settings = settings
        self.api_keys = api_keys
        self.tokens = tokens
        self._csrf_key = hashlib.sha256(
            b"console-csrf\x00" + settings.internal_api_key.get_secret_value().encode()
        ).digest()

    async def admin_from_token(self, token: str) -> Operator:
        """An admin's access token, or `Unauthorized`/`Forbidden`."""
        principal: Principal = await decode_access_token(self.tokens, token)
        if not principal.is_admin:
            raise Forbidden("this needs an admin account", code="forbidden")
        return Operator(name=f"user {principal.user_id}", access_token=token)

    async def from_bearer(self, raw: str) -> Operator:
        if raw.count(".") == 2:
            return await self.admin_from_token(raw)
        key = await self.api_keys.verify(raw) if len(raw) <= 512 else None
        if key is None:
            raise Unauthorized(
                "a valid API key or admin access token is required",
                code="invalid_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if ADMIN_SCOPE not in key.scopes:
            raise Forbidden("this API key lacks the admin scope", code="forbidden")
        return Operator(name=f"api key {key.name}")

    async def from_cookie(self, request: Request) -> Operator | None:
        """The console session's admin, or None when there is no usable session."""
        token = request.cookies.get(SESSION_COOKIE)
        if not token:
            return None
        try:
            operator = await self.admin_from_token(token)
        except (Unauthorized, Forbidden):
            return None
        return Operator(name=operator.name, access_token=token, via_cookie=True)

    # --- CSRF --------------------------------------------------------------------------

    def csrf_token(self, nonce: str, session: str | None) -> str:
        message = f"{nonce}\x00{session or ''}".encode()
        return hmac.new(self._csrf_key, message, hashlib.sha256).hexdigest()

    def check_csrf(self, request: Request, presented: str | None) -> None:
        nonce = request.cookies.get(NONCE_COOKIE)
        expected = self.csrf_token(nonce, request.cookies.get(SESSION_COOKIE)) if nonce else None
        if not (presented and expected and hmac.compare_digest(presented, expected)):
            raise CsrfFailed()

    def secure_cookies(self, request: Request) -> bool:
        return self.settings.environment == "production" or request.url.scheme == "https"


def new_nonce() -> str:
    return secrets.token_urlsafe(24)


def operator_auth(request: Request) -> OperatorAuth:
    auth: OperatorAuth = request.app.state.operators
    return auth


OperatorAuthDep = Annotated[OperatorAuth, Depends(operator_auth)]

_bearer = HTTPBearer(
    auto_error=False,
    description="An API key with the `admin` scope, or an admin user's access token",
)


async def current_operator(
    request: Request,
    auth: OperatorAuthDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Operator:
    """The bearer's operator; else the console cookie's (with a CSRF token on unsafe methods)."""
    if bearer is not None:
        return await auth.from_bearer(bearer.credentials)
    operator = await auth.from_cookie(request)
    if operator is None:
        raise Unauthorized(
            "an admin API key or access token is required (Authorization: Bearer ...)",
            code="unauthorized",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if request.method not in _SAFE_METHODS:
        auth.check_csrf(request, request.headers.get(CSRF_HEADER))
    return operator


CurrentOperator = Annotated[Operator, Depends(current_operator)]
