"""One-click unsubscribe (RFC 8058): `GET /u/{token}` shows a confirmation page with a button,
`POST /u/{token}` turns the token's category off on its channel.

The token (`shared/unsubscribe.py`, signed with `UNSUBSCRIBE_SECRET`) is the only credential:
mail clients post the `List-Unsubscribe` URL without a login, with the body
`List-Unsubscribe=One-Click`. The body is not required, because the signed token already says
everything; link scanners only ever GET, and a GET changes nothing. The POST is idempotent
(the user service's `POST /internal/v1/users/{id}/unsubscribe`), so a client that retries, or a
person who clicks twice, gets the same answer. A user who no longer exists gets it too: nothing
will be sent to them either way.

Browsers (`Accept: text/html`) get a small page; everyone else gets the common envelope, and a
bad token is 404 `invalid_unsubscribe_token`. The pages load nothing from anywhere, escape
every value, and ask not to be cached, indexed or sent on as a referrer (the URL is a
credential).
"""

from __future__ import annotations

import html
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, get_args

import httpx
from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from services.api_gateway.settings import GatewaySettings
from shared.contracts import Channel, OptOutCategory
from shared.envelope import Envelope, error_body, ok
from shared.errors import AppError, DependencyUnavailable, error_responses
from shared.http_client import create_http_client, internal_headers
from shared.unsubscribe import MAX_TOKEN_CHARS, InvalidUnsubscribeToken, Unsubscribe, read_token

logger = logging.getLogger("api_gateway.unsubscribe")

_CHANNELS = set(get_args(Channel))
_CATEGORIES = set(get_args(OptOutCategory))
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Robots-Tag": "noindex",
    "X-Content-Type-Options": "nosniff",
}
_WHY = {
    404: "`invalid_unsubscribe_token`",
    422: "`validation_error`",
    503: "`dependency_unavailable`: the user service did not answer; try again",
}

_ENVELOPE = {"$ref": "#/components/schemas/ErrorEnvelope"}

TokenPath = Annotated[
    str,
    Path(
        min_length=1,
        max_length=MAX_TOKEN_CHARS,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="the token from the email's `List-Unsubscribe` URL",
    ),
]


class Unsubscriber:
    """Checks a token and asks the user service to apply it."""

    def __init__(self, settings: GatewaySettings, http: httpx.AsyncClient) -> None:
        self.secret = settings.unsubscribe_secret.get_secret_value()
        self.http = http

    def check(self, token: str) -> Unsubscribe:
        """The request a token carries; `InvalidUnsubscribeToken` if it is not ours."""
        request = read_token(self.secret, token)
        if request.channel not in _CHANNELS or request.category not in _CATEGORIES:
            raise InvalidUnsubscribeToken()
        return request

    async def apply(self, token: str) -> Unsubscribe:
        request = self.check(token)
        try:
            response = await self.http.post(
                f"/internal/v1/users/{request.user_id}/unsubscribe",
                json={"channel": request.channel, "category": request.category},
            )
        except httpx.HTTPError as exc:
            logger.warning("unsubscribe: user service unreachable: %s", type(exc).__name__)
            raise DependencyUnavailable("the user service is unavailable; try again") from exc
        if response.status_code == 404:
            return request  # the user is gone: nothing will be sent to them anyway
        if response.status_code != 200:
            logger.warning("unsubscribe: user service answered %s", response.status_code)
            raise DependencyUnavailable("the user service is unavailable; try again")
        return request


@asynccontextmanager
async def open_unsubscriber(settings: GatewaySettings) -> AsyncIterator[Unsubscriber]:
    """The lifespan's: one HTTP client to the user service's internal API."""
    http = create_http_client(
        settings, base_url=settings.user_service_url, headers=internal_headers(settings)
    )
    try:
        yield Unsubscriber(settings, http)
    finally:
        await http.aclose()


async def _unsubscriber(request: Request) -> Unsubscriber:
    unsubscriber: Unsubscriber = request.app.state.unsubscriber
    return unsubscriber


UnsubscriberDep = Annotated[Unsubscriber, Depends(_unsubscriber)]

router = APIRouter(tags=["unsubscribe"])


def _wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


def _page(title: str, body: str, status_code: int = 200) -> HTMLResponse:
    """A complete page; `body` is markup made here from escaped values only."""
    document = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;"
        "padding:0 1rem;line-height:1.5}button{font:inherit;padding:.5rem 1.25rem;"
        "cursor:pointer}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    return HTMLResponse(document, status_code=status_code, headers=_HEADERS)


def _what(request: Unsubscribe) -> str:
    return html.escape(f"{request.category} {request.channel}")


_INVALID_PAGE = "<p>This unsubscribe link is not valid. Copy the whole link from the email.</p>"


def _problem(exc: AppError, wants_html: bool) -> Response:
    if wants_html:
        return _page("Unsubscribe", f"<p>{html.escape(exc.message)}</p>", exc.status_code)
    return JSONResponse(
        error_body(exc.code, exc.message), status_code=exc.status_code, headers=_HEADERS
    )


@router.get(
    "/u/{token}",
    response_class=HTMLResponse,
    summary="The confirmation page of an unsubscribe link (changes nothing)",
    responses={
        404: {"description": "the link is not valid (a page)", "content": {"text/html": {}}},
        422: {"description": _WHY[422], "content": {"application/json": {"schema": _ENVELOPE}}},
    },
)
async def confirm_page(token: TokenPath, unsubscriber: UnsubscriberDep) -> HTMLResponse:
    try:
        request = unsubscriber.check(token)
    except InvalidUnsubscribeToken:
        return _page("Unsubscribe", _INVALID_PAGE, 404)
    form = (
        f"<p>Stop receiving <strong>{_what(request)}</strong> messages?</p>"
        f'<form method="post" action="./{html.escape(token)}">'
        '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
        '<button type="submit">Unsubscribe</button></form>'
    )
    return _page("Unsubscribe", form)


@router.post(
    "/u/{token}",
    response_model=Envelope[dict[str, Any]],
    summary="One-click unsubscribe (RFC 8058; no authentication: the signed token is enough)",
    description="Mail clients post `List-Unsubscribe=One-Click` (form-encoded); any body is "
    "accepted. Idempotent. `Accept: text/html` gets a page instead of the envelope.",
    responses={
        200: {"content": {"text/html": {}}},
        **{
            status: {**entry, "content": {"text/html": {}}}
            for status, entry in error_responses(_WHY, 404, 503).items()
        },
    },
)
async def one_click(token: TokenPath, request: Request, unsubscriber: UnsubscriberDep) -> Response:
    wants_html = _wants_html(request)
    try:
        applied = await unsubscriber.apply(token)
    except (InvalidUnsubscribeToken, DependencyUnavailable) as exc:
        return _problem(exc, wants_html)
    if wants_html:
        return _page(
            "Unsubscribed", f"<p>You will no longer receive {_what(applied)} messages.</p>"
        )
    data = {"channel": applied.channel, "category": applied.category, "unsubscribed": True}
    return JSONResponse(ok(data, "unsubscribed"), headers=_HEADERS)
