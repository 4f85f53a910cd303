"""Console pages for the dead-letter queue: list per channel, inspect one, replay one or all,
purge after a confirmation step. They call the same client as the operator API."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from services.api_gateway.console.web import (
    PREFIX,
    AuthDep,
    ConsoleDep,
    MaybeSession,
    Session,
    read_form,
    render,
    to_login,
)
from shared.errors import AppError
from shared.messaging.message import Channel

router = APIRouter(prefix=f"{PREFIX}/dead-letters", include_in_schema=False)

PAGE_SIZE = 50


async def _list_page(
    request: Request,
    auth: AuthDep,
    console: ConsoleDep,
    session: Session,
    channel: Channel,
    page: int,
    *,
    report: dict[str, Any] | None = None,
    status_code: int = 200,
) -> Response:
    error = None
    listing = None
    try:
        listing = await console.dead_letters.list(channel, page=page, limit=PAGE_SIZE)
    except AppError as exc:
        error = exc.message
    context = {
        "section": "dead-letters",
        "channel": channel.value,
        "channels": [c.value for c in Channel],
        "listing": listing,
        "error": error,
        "report": report,
    }
    return render(
        request,
        auth,
        "dead_letters.html",
        context,
        status_code=status_code if error is None else 503,
        session=session,
    )


@router.get("")
async def dead_letters_page(
    request: Request,
    auth: AuthDep,
    console: ConsoleDep,
    session: MaybeSession,
    channel: Channel = Channel.EMAIL,
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
) -> Response:
    if session is None:
        return to_login(request)
    return await _list_page(request, auth, console, session, channel, page)


@router.get("/{channel}/purge")
async def purge_confirmation(
    request: Request, channel: Channel, auth: AuthDep, console: ConsoleDep, session: MaybeSession
) -> Response:
    """The confirmation step: how many would go, and a form that says so."""
    if session is None:
        return to_login(request)
    error, total = None, None
    try:
        total = (await console.dead_letters.list(channel, page=1, limit=1)).meta.total
    except AppError as exc:
        error = exc.message
    context = {"section": "dead-letters", "channel": channel.value, "total": total, "error": error}
    return render(request, auth, "purge.html", context, session=session)


@router.post("/{channel}/purge")
async def purge(
    request: Request, channel: Channel, auth: AuthDep, console: ConsoleDep, session: MaybeSession
) -> Response:
    if session is None:
        return to_login(request)
    form = await read_form(request, auth)
    if form.get("confirm") != "purge":
        context = {
            "section": "dead-letters",
            "channel": channel.value,
            "total": None,
            "error": "Type purge to confirm.",
        }
        return render(request, auth, "purge.html", context, status_code=400, session=session)
    try:
        result = await console.dead_letters.purge(channel)
        report = {"kind": "purge", **result}
    except AppError as exc:
        report = {"kind": "error", "message": exc.message}
    return await _list_page(request, auth, console, session, channel, 1, report=report)


@router.post("/{channel}/replay")
async def replay(
    request: Request, channel: Channel, auth: AuthDep, console: ConsoleDep, session: MaybeSession
) -> Response:
    if session is None:
        return to_login(request)
    form = await read_form(request, auth)
    message_id = form.get("message_id") or None
    try:
        result = await console.dead_letters.replay(channel, message_id)
        report = {"kind": "replay", **result}
    except AppError as exc:
        report = {"kind": "error", "message": exc.message}
    return await _list_page(request, auth, console, session, channel, 1, report=report)


@router.get("/{channel}/{message_id}")
async def dead_letter_page(
    request: Request,
    channel: Channel,
    message_id: str,
    auth: AuthDep,
    console: ConsoleDep,
    session: MaybeSession,
) -> Response:
    if session is None:
        return to_login(request)
    found, error, status = None, None, 200
    try:
        found = await console.dead_letters.get(channel, message_id[:255])
    except AppError as exc:
        error, status = exc.message, exc.status_code
    context = {"section": "dead-letters", "channel": channel.value, "item": found, "error": error}
    return render(request, auth, "dead_letter.html", context, status_code=status, session=session)
