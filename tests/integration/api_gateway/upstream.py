"""Small real HTTP apps standing in for the user and template services' internal APIs.

They implement the documented contracts (docs/architecture.md, "Internal HTTP contracts") over
real HTTP on a free port, so the gateway's clients, timeouts, retries and breakers are tested
for real; `stop()` and `start()` bring the "service" down and back on the same port.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse

from devtools.stack import free_port
from shared.envelope import error_body, ok


@dataclass
class UpstreamState:
    internal_key: str
    identity_url: str | None = None
    """The run's real user service, which answers token checks (keys, versions) for us."""
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    templates: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    contact_hits: int = 0
    template_hits: int = 0
    contact_delay: float = 0.0
    fail_next_templates: int = 0
    unsubscribes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


def _app(state: UpstreamState) -> FastAPI:
    app = FastAPI()

    def authorised(key: str | None) -> bool:
        return key == state.internal_key

    @app.get("/internal/v1/users/{user_id}/contact")
    async def contact(user_id: str, x_internal_api_key: str | None = Header(None)) -> Any:
        if not authorised(x_internal_api_key):
            return JSONResponse(error_body("invalid_internal_key", "no"), 401)
        state.contact_hits += 1
        if state.contact_delay:
            await asyncio.sleep(state.contact_delay)
        user = state.users.get(user_id)
        if user is None:
            return JSONResponse(error_body("user_not_found", "no such user"), 404)
        return ok(user)

    @app.post("/internal/v1/users/{user_id}/unsubscribe")
    async def unsubscribe(
        user_id: str, request: Request, x_internal_api_key: str | None = Header(None)
    ) -> Any:
        if not authorised(x_internal_api_key):
            return JSONResponse(error_body("invalid_internal_key", "no"), 401)
        body = await request.json()
        state.unsubscribes.append((user_id, body))
        user = state.users.get(user_id)
        if user is None:
            return JSONResponse(error_body("user_not_found", "no such user"), 404)
        categories = user["preferences"].setdefault("categories", {})
        categories.setdefault(body["category"], {})[body["channel"]] = False
        return ok(user["preferences"])

    @app.get("/.well-known/jwks.json")
    async def jwks() -> Any:
        return await _forward(state, "/.well-known/jwks.json", {})

    @app.get("/internal/v1/users/{user_id}/token-version")
    async def token_version(user_id: str, x_internal_api_key: str | None = Header(None)) -> Any:
        headers = {"X-Internal-API-Key": x_internal_api_key or ""}
        return await _forward(state, f"/internal/v1/users/{user_id}/token-version", headers)

    @app.get("/internal/v1/templates/{code}/active")
    async def active(
        code: str, request: Request, x_internal_api_key: str | None = Header(None)
    ) -> Any:
        if not authorised(x_internal_api_key):
            return JSONResponse(error_body("invalid_internal_key", "no"), 401)
        state.template_hits += 1
        if state.fail_next_templates > 0:
            state.fail_next_templates -= 1
            return JSONResponse(error_body("internal_error", "boom"), 500)
        template = state.templates.get((code, request.query_params.get("channel", "")))
        if template is None:
            return JSONResponse(error_body("template_not_found", "no such template"), 404)
        return ok(template)

    return app


async def _forward(state: UpstreamState, path: str, headers: dict[str, str]) -> Any:
    """Token checks are the real user service's business: pass them through."""
    assert state.identity_url is not None
    async with httpx.AsyncClient(base_url=state.identity_url, timeout=5) as client:
        response = await client.get(path, headers=headers)
    return JSONResponse(response.json(), response.status_code)


class Upstream:
    """Both internal APIs in one uvicorn server on a free port, in the test's event loop."""

    def __init__(self, internal_key: str, identity_url: str | None = None) -> None:
        self.state = UpstreamState(internal_key=internal_key, identity_url=identity_url)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        config = uvicorn.Config(
            _app(self.state),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="off",
            access_log=False,
        )
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task
        self._server = self._task = None

    # --- data ---------------------------------------------------------------------------

    def add_user(
        self,
        *,
        email: str | None = "ada@example.com",
        email_on: bool = True,
        push_on: bool = True,
        devices: list[dict[str, str]] | None = None,
        quiet_hours: dict[str, str] | None = None,
        timezone: str = "UTC",
        locale: str = "en",
        categories: dict[str, dict[str, bool]] | None = None,
    ) -> uuid.UUID:
        user_id = uuid.uuid4()
        self.state.users[str(user_id)] = {
            "user_id": str(user_id),
            "name": "Ada Lovelace",
            "email": email,
            "locale": locale,
            "timezone": timezone,
            "preferences": {
                "email": email_on,
                "push": push_on,
                "quiet_hours": quiet_hours,
                "categories": categories or {},
            },
            "devices": devices if devices is not None else [],
        }
        return user_id

    def add_template(
        self,
        code: str,
        channel: str = "email",
        version: int = 3,
        category: str = "transactional",
    ) -> None:
        base: dict[str, Any] = {
            "code": code,
            "channel": channel,
            "category": category,
            "locale": "en",
            "version": version,
            "name": f"{code} ({channel})",
            "subject": None,
            "text_body": None,
            "html_body": None,
            "title": None,
            "body": None,
            "data": None,
            "image_url": None,
        }
        if channel == "email":
            base |= {
                "subject": "Welcome, {{ name }}!",
                "text_body": "Hi {{ name }}, start here: {{ link }}",
                "html_body": '<p>Hi {{ name }}, <a href="{{ link }}">start</a></p>',
                "variables": ["link", "name"],
            }
        else:
            base |= {
                "title": "Hi {{ name }}",
                "body": "Open {{ link }}",
                "variables": ["link", "name"],
            }
        self.state.templates[(code, channel)] = base
