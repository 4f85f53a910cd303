"""What every console page shares: the session, CSRF, form parsing, rendering and headers.

Pages are server-rendered Jinja2 (autoescaped) and work without JavaScript; one small ES module
(`static/overview.js`) refreshes the overview's charts. A page without a valid admin session
redirects to the sign-in page. Every POST form carries the CSRF token and is checked here;
GET forms (search, filters) change nothing and carry none, so no token ends up in a URL.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qsl, quote

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from services.api_gateway.console.resources import Console
from services.api_gateway.operators import (
    CSRF_FIELD,
    NONCE_COOKIE,
    SESSION_COOKIE,
    Operator,
    OperatorAuth,
    new_nonce,
    operator_auth,
)
from shared.errors import AppError

HERE = Path(__file__).parent
PREFIX = "/console"
STATIC_URL = f"{PREFIX}/static"
templates = Jinja2Templates(directory=HERE / "templates")

# Inline styles are allowed for the sandboxed preview of a rendered HTML email (its own
# markup); scripts only from this origin, images only local or inline, nothing may frame us.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; frame-src 'self'; frame-ancestors 'none'; form-action 'self'; "
        "base-uri 'none'; object-src 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def static_files() -> StaticFiles:
    return StaticFiles(directory=HERE / "static")


def console_of(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


ConsoleDep = Annotated[Console, Depends(console_of)]
AuthDep = Annotated[OperatorAuth, Depends(operator_auth)]


@dataclass(frozen=True)
class Session:
    """The signed-in admin and their access token (sent on to the template service)."""

    operator: Operator
    token: str


async def session_of(request: Request, auth: AuthDep) -> Session | None:
    operator = await auth.from_cookie(request)
    if operator is None or operator.access_token is None:
        return None
    return Session(operator, operator.access_token)


MaybeSession = Annotated[Session | None, Depends(session_of)]


def to_login(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"{PREFIX}/login?next={quote(target)}", status_code=303)


def safe_next(value: str | None) -> str:
    """Only a console path: never an open redirect to another site."""
    if (
        value
        and value.startswith(f"{PREFIX}/")
        and not value.startswith("//")
        and "\\" not in value
    ):
        return value
    return f"{PREFIX}/overview"


def render(
    request: Request,
    auth: OperatorAuth,
    name: str,
    context: dict[str, Any],
    *,
    status_code: int = 200,
    session: Session | None = None,
) -> HTMLResponse:
    """A page with its CSRF token; sets the nonce cookie when the browser has none."""
    nonce = request.cookies.get(NONCE_COOKIE)
    fresh = nonce is None
    if nonce is None:
        nonce = new_nonce()
    token = session.token if session else request.cookies.get(SESSION_COOKIE)
    response = templates.TemplateResponse(
        request,
        name,
        {
            "csrf_field": CSRF_FIELD,
            "csrf_token": auth.csrf_token(nonce, token),
            "operator": session.operator if session else None,
            "prefix": PREFIX,
            "static": STATIC_URL,
            **context,
        },
        status_code=status_code,
    )
    if fresh:
        set_cookie(request, auth, response, NONCE_COOKIE, nonce, max_age=12 * 3600)
    response.headers.update(SECURITY_HEADERS)
    return response


def set_cookie(
    request: Request, auth: OperatorAuth, response: Response, name: str, value: str, *, max_age: int
) -> None:
    # Path "/": the operator API under /v1/admin accepts the same session.
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="strict",
        secure=auth.secure_cookies(request),
    )


async def read_form(request: Request, auth: OperatorAuth) -> dict[str, str]:
    """An urlencoded form, after its CSRF token is checked."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise AppError("forms are sent urlencoded", code="unsupported_media_type", status_code=415)
    raw = (await request.body()).decode("utf-8", errors="replace")
    form = dict(parse_qsl(raw, keep_blank_values=True, max_num_fields=100))
    auth.check_csrf(request, form.get(CSRF_FIELD))
    return form


def redirect(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)
