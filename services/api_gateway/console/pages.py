"""Console pages: sign-in and sign-out, the overview, and notifications (search and detail)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from services.api_gateway.console.rendered import rendered_content
from services.api_gateway.console.store import Search
from services.api_gateway.console.upstream import UpstreamError
from services.api_gateway.console.web import (
    PREFIX,
    AuthDep,
    ConsoleDep,
    MaybeSession,
    read_form,
    redirect,
    render,
    safe_next,
    set_cookie,
    to_login,
)
from services.api_gateway.operators import NONCE_COOKIE, SESSION_COOKIE, new_nonce
from shared.errors import Forbidden, Unauthorized
from shared.messaging.message import Channel
from shared.notification_status import NotificationStatus

router = APIRouter(prefix=PREFIX, include_in_schema=False)

STATUSES = [s.value for s in NotificationStatus]
CHANNELS = [c.value for c in Channel]
PAGE_SIZE = 25


@router.get("")
@router.get("/")
async def home() -> Response:
    return redirect(f"{PREFIX}/overview")


# --- sign-in --------------------------------------------------------------------------------


@router.get("/login")
async def login_page(
    request: Request, auth: AuthDep, session: MaybeSession, next: str | None = None
) -> Response:
    if session is not None:
        return redirect(safe_next(next))
    return render(request, auth, "login.html", {"next": safe_next(next), "error": None})


@router.post("/login")
async def login(request: Request, auth: AuthDep, console: ConsoleDep) -> Response:
    form = await read_form(request, auth)
    target = safe_next(form.get("next"))
    email, password = form.get("email", "").strip(), form.get("password", "")
    error = None
    try:
        if not email or not password:
            raise UpstreamError(422, "validation_error", "enter your email and password")
        login = await console.upstream.login(email, password)
        await auth.admin_from_token(login.access_token)
    except UpstreamError as exc:
        error = (
            "Wrong email or password."
            if exc.status_code == 401
            else exc.message
            if exc.status_code in (422, 429)
            else "Sign-in is unavailable right now; try again shortly."
        )
    except Forbidden:
        error = "This account is not an admin; the console is for admins only."
    except Unauthorized:
        error = "The user service issued a token this gateway cannot verify."
    if error is not None:
        context = {"next": target, "error": error, "email": email}
        return render(request, auth, "login.html", context, status_code=401)
    response = redirect(target)
    # A fresh nonce with the new session: a token minted before sign-in is worth nothing now.
    set_cookie(
        request, auth, response, SESSION_COOKIE, login.access_token, max_age=login.expires_in
    )
    set_cookie(request, auth, response, NONCE_COOKIE, new_nonce(), max_age=login.expires_in)
    return response


@router.post("/logout")
async def logout(request: Request, auth: AuthDep) -> Response:
    await read_form(request, auth)
    response = redirect(f"{PREFIX}/login")
    for name in (SESSION_COOKIE, NONCE_COOKIE):
        response.delete_cookie(name, path="/")
    return response


# --- overview -------------------------------------------------------------------------------


@router.get("/overview")
async def overview_page(
    request: Request, auth: AuthDep, console: ConsoleDep, session: MaybeSession
) -> Response:
    if session is None:
        return to_login(request)
    await console.overview.refresh()
    context = {"view": console.overview.view(), "section": "overview"}
    return render(request, auth, "overview.html", context, session=session)


@router.get("/overview/panels")
async def overview_panels(
    request: Request, auth: AuthDep, console: ConsoleDep, session: MaybeSession
) -> Response:
    """The charts alone, for the page's live refresh."""
    if session is None:
        return HTMLResponse("", status_code=401)
    await console.overview.refresh()
    context = {"view": console.overview.view()}
    return render(request, auth, "_overview_panels.html", context, session=session)


# --- notifications --------------------------------------------------------------------------


def _parse_search(params: dict[str, str]) -> tuple[Search, list[str]]:
    errors: list[str] = []

    def as_uuid(name: str, label: str) -> uuid.UUID | None:
        value = params.get(name, "").strip()
        if not value:
            return None
        try:
            return uuid.UUID(value)
        except ValueError:
            errors.append(f"{label} is not a UUID.")
            return None

    def as_time(name: str, label: str) -> datetime | None:
        value = params.get(name, "").strip()
        if not value:
            return None
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            errors.append(f"{label} is not a date and time.")
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)

    def choice(name: str, allowed: list[str], label: str) -> str | None:
        value = params.get(name, "").strip()
        if value and value not in allowed:
            errors.append(f"{label} must be one of {', '.join(allowed)}.")
            return None
        return value or None

    search = Search(
        notification_id=as_uuid("id", "Notification id"),
        request_id=params.get("request_id", "").strip()[:255] or None,
        user_id=as_uuid("user_id", "User id"),
        status=choice("status", STATUSES, "Status"),
        channel=choice("channel", CHANNELS, "Channel"),
        created_from=as_time("from", "From"),
        created_to=as_time("to", "To"),
    )
    return search, errors


@router.get("/notifications")
async def notifications_page(
    request: Request,
    auth: AuthDep,
    console: ConsoleDep,
    session: MaybeSession,
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
) -> Response:
    if session is None:
        return to_login(request)
    params = dict(request.query_params)
    search, errors = _parse_search(params)
    results = None if errors else await console.store.search(search, page=page, limit=PAGE_SIZE)
    query = {k: v for k, v in params.items() if k != "page" and v}
    context = {
        "section": "notifications",
        "params": params,
        "query": query,
        "errors": errors,
        "results": results,
        "statuses": STATUSES,
        "channels": CHANNELS,
    }
    status = 422 if errors else 200
    return render(request, auth, "notifications.html", context, status_code=status, session=session)


@router.get("/notifications/{notification_id}")
async def notification_page(
    request: Request,
    notification_id: str,
    auth: AuthDep,
    console: ConsoleDep,
    session: MaybeSession,
) -> Response:
    if session is None:
        return to_login(request)
    found: dict[str, Any] | None = None
    try:
        found = await console.store.notification(uuid.UUID(notification_id))
    except ValueError:
        found = None
    if found is None:
        context = {"section": "notifications", "missing": notification_id}
        return render(request, auth, "notification.html", context, status_code=404, session=session)
    content = await rendered_content(console.versions, found)
    context = {"section": "notifications", "n": found, "content": content}
    return render(request, auth, "notification.html", context, session=session)
