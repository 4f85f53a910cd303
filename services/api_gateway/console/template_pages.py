"""Console pages for templates: list, one template's versions, a diff between two versions, a
preview with variables, and activate (roll back or forward). Every call goes to the template
service's own API with the signed-in admin's access token."""

from __future__ import annotations

import difflib
import json
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from services.api_gateway.console.upstream import UpstreamError
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
from shared.messaging.message import Channel
from shared.template_client import CODE_PATTERN

router = APIRouter(prefix=f"{PREFIX}/templates", include_in_schema=False)

CodePath = Annotated[str, Path(pattern=CODE_PATTERN)]
FIELDS = ("subject", "text_body", "html_body", "title", "body", "data", "image_url")


@router.get("")
async def templates_page(
    request: Request,
    auth: AuthDep,
    console: ConsoleDep,
    session: MaybeSession,
    code: Annotated[str | None, Query(max_length=64)] = None,
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
) -> Response:
    if session is None:
        return to_login(request)
    listing, error = None, None
    try:
        listing = await console.upstream.templates(session.token, page=page, code=code)
    except UpstreamError as exc:
        if exc.status_code == 401:
            return to_login(request)
        error = exc.message
    context = {"section": "templates", "listing": listing, "error": error, "code": code or ""}
    return render(request, auth, "templates.html", context, session=session)


def field_text(version: dict[str, Any], name: str) -> str:
    value = version.get(name)
    if value is None:
        return ""
    if isinstance(value, dict):
        return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)
    return str(value)


def version_diff(older: dict[str, Any], newer: dict[str, Any]) -> list[dict[str, Any]]:
    """Per field, the unified diff lines from `older` to `newer` (only fields that differ)."""
    changes = []
    for name in FIELDS:
        before, after = field_text(older, name), field_text(newer, name)
        if before == after:
            continue
        lines = list(
            difflib.unified_diff(
                before.splitlines(),
                after.splitlines(),
                fromfile=f"v{older['version']}",
                tofile=f"v{newer['version']}",
                lineterm="",
            )
        )[2:]
        kinds = {"+": "added", "-": "removed", "@": "hunk"}
        changes.append(
            {
                "field": name,
                "lines": [{"kind": kinds.get(line[:1], "same"), "text": line} for line in lines],
            }
        )
    return changes


async def _template_page(
    request: Request,
    auth: AuthDep,
    console: ConsoleDep,
    session: Session,
    code: str,
    channel: Channel,
    locale: str | None,
    *,
    compare: tuple[int | None, int | None] = (None, None),
    preview: dict[str, Any] | None = None,
    notice: str | None = None,
    status_code: int = 200,
) -> Response:
    versions: list[dict[str, Any]] = []
    error = None
    try:
        listing = await console.upstream.versions(
            session.token, code, channel=channel.value, locale=locale, page=1
        )
        versions = listing.items
    except UpstreamError as exc:
        if exc.status_code == 401:
            return to_login(request)
        error, status_code = exc.message, exc.status_code
    by_number = {v["version"]: v for v in versions}
    a, b = compare
    diff = None
    if a in by_number and b in by_number and a is not None and b is not None:
        older, newer = sorted((by_number[a], by_number[b]), key=lambda v: v["version"])
        diff = version_diff(older, newer)
    active = next((v for v in versions if v.get("active")), versions[0] if versions else None)
    variables = (preview or {}).get("variables_text") or json.dumps(
        dict.fromkeys((active or {}).get("variables") or [], ""), indent=2
    )
    context = {
        "section": "templates",
        "code": code,
        "channel": channel.value,
        "channels": [c.value for c in Channel],
        "locale": locale or (active or {}).get("locale") or "",
        "versions": versions,
        "active": active,
        "compare": {"a": a, "b": b},
        "diff": diff,
        "preview": preview,
        "variables": variables,
        "notice": notice,
        "error": error,
        "fields": FIELDS,
    }
    return render(request, auth, "template.html", context, status_code=status_code, session=session)


@router.get("/{code}")
async def template_page(
    request: Request,
    code: CodePath,
    auth: AuthDep,
    console: ConsoleDep,
    session: MaybeSession,
    channel: Channel = Channel.EMAIL,
    locale: Annotated[str | None, Query(max_length=35)] = None,
    a: Annotated[int | None, Query(ge=1)] = None,
    b: Annotated[int | None, Query(ge=1)] = None,
) -> Response:
    if session is None:
        return to_login(request)
    return await _template_page(
        request, auth, console, session, code, channel, locale or None, compare=(a, b)
    )


def _channel(form: dict[str, str]) -> Channel:
    try:
        return Channel(form.get("channel", "email"))
    except ValueError:
        return Channel.EMAIL


def _version(form: dict[str, str], name: str = "version") -> int | None:
    value = form.get(name, "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


@router.post("/{code}/preview")
async def preview(
    request: Request, code: CodePath, auth: AuthDep, console: ConsoleDep, session: MaybeSession
) -> Response:
    if session is None:
        return to_login(request)
    form = await read_form(request, auth)
    channel, locale, version = _channel(form), form.get("locale") or None, _version(form)
    text = form.get("variables", "").strip() or "{}"
    result: dict[str, Any] = {"variables_text": text, "version": version}
    status = 200
    try:
        variables = json.loads(text)
        if not isinstance(variables, dict):
            raise ValueError("not an object")
    except ValueError:
        result["error"] = 'Variables must be a JSON object, e.g. {"name": "Ada"}.'
        status = 422
    else:
        try:
            answer = await console.upstream.render(
                session.token,
                code,
                channel=channel.value,
                locale=locale,
                version=version,
                variables=variables,
            )
            result["rendered"] = answer.get("rendered") or {}
            result["version"] = answer.get("version") or version
        except UpstreamError as exc:
            if exc.status_code == 401:
                return to_login(request)
            result["error"] = exc.message
            result["details"] = exc.details
            status = exc.status_code
    # The comparison on screen stays while previewing.
    compare = (_version(form, "a"), _version(form, "b"))
    return await _template_page(
        request,
        auth,
        console,
        session,
        code,
        channel,
        locale,
        compare=compare,
        preview=result,
        status_code=status,
    )


@router.post("/{code}/activate")
async def activate(
    request: Request, code: CodePath, auth: AuthDep, console: ConsoleDep, session: MaybeSession
) -> Response:
    if session is None:
        return to_login(request)
    form = await read_form(request, auth)
    channel, locale, version = _channel(form), form.get("locale") or None, _version(form)
    status = 200
    if version is None:
        notice, status = "Choose a version to activate.", 422
    else:
        try:
            await console.upstream.activate(
                session.token, code, version, channel=channel.value, locale=locale
            )
            notice = f"Version {version} is now active."
        except UpstreamError as exc:
            if exc.status_code == 401:
                return to_login(request)
            notice, status = f"Not activated: {exc.message}", exc.status_code
    return await _template_page(
        request, auth, console, session, code, channel, locale, notice=notice, status_code=status
    )
