"""The console's calls to the user and template services' public APIs, as the signed-in admin.

Sign-in is the user service's own login (`POST /api/v1/auth/login`); template pages call the
template service's admin API with the admin's access token, so the template service applies its
own rules (and records who activated what). Nothing here holds a credential of its own.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import httpx

from shared.http_client import create_http_client
from shared.settings import Settings

logger = logging.getLogger("api_gateway.console.upstream")


@dataclass
class UpstreamError(Exception):
    """A refusal or failure of the user or template service, shown to the admin as is."""

    status_code: int
    code: str
    message: str
    details: list[dict[str, str]] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


@dataclass(frozen=True)
class Login:
    access_token: str
    expires_in: int


@dataclass(frozen=True)
class Listing:
    items: list[dict[str, Any]]
    meta: dict[str, Any]


class Upstream:
    def __init__(self, settings: Settings) -> None:
        self._users = create_http_client(settings, base_url=settings.user_service_url)
        self._templates = create_http_client(settings, base_url=settings.template_service_url)

    async def aclose(self) -> None:
        await self._users.aclose()
        await self._templates.aclose()

    async def login(self, email: str, password: str) -> Login:
        data = await self._call(
            self._users,
            "POST",
            "/api/v1/auth/login",
            json={"email": email, "password": password},
            service="user service",
        )
        return Login(access_token=str(data["access_token"]), expires_in=int(data["expires_in"]))

    async def templates(self, token: str, *, page: int, code: str | None) -> Listing:
        params: dict[str, Any] = {"page": page, "limit": 50}
        if code:
            params["code"] = code
        return await self._listing(token, "/api/v1/templates", params)

    async def versions(
        self, token: str, code: str, *, channel: str, locale: str | None, page: int
    ) -> Listing:
        params: dict[str, Any] = {"channel": channel, "page": page, "limit": 100}
        if locale:
            params["locale"] = locale
        return await self._listing(token, f"/api/v1/templates/{code}/versions", params)

    async def render(
        self,
        token: str,
        code: str,
        *,
        channel: str,
        locale: str | None,
        version: int | None,
        variables: dict[str, Any],
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"channel": channel, "variables": variables}
        if locale:
            body["locale"] = locale
        if version is not None:
            body["version"] = version
        return await self._call(
            self._templates,
            "POST",
            f"/api/v1/templates/{code}/render",
            json=body,
            token=token,
            service="template service",
        )

    async def activate(
        self, token: str, code: str, version: int, *, channel: str, locale: str | None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"channel": channel}
        if locale:
            body["locale"] = locale
        return await self._call(
            self._templates,
            "POST",
            f"/api/v1/templates/{code}/versions/{version}/activate",
            json=body,
            token=token,
            service="template service",
        )

    async def _listing(self, token: str, path: str, params: dict[str, Any]) -> Listing:
        response = await self._send(
            self._templates, "GET", path, params=params, token=token, service="template service"
        )
        body = response.json()
        return Listing(items=list(body.get("data") or []), meta=dict(body.get("meta") or {}))

    async def _call(
        self,
        client: httpx.AsyncClient,
        method: str,
        path: str,
        *,
        service: str,
        json: Any = None,
        token: str | None = None,
    ) -> dict[str, Any]:
        response = await self._send(client, method, path, json=json, token=token, service=service)
        data: dict[str, Any] = response.json().get("data") or {}
        return data

    async def _send(
        self,
        client: httpx.AsyncClient,
        method: str,
        path: str,
        *,
        service: str,
        params: dict[str, Any] | None = None,
        json: Any = None,
        token: str | None = None,
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else None
        try:
            response = await client.request(method, path, params=params, json=json, headers=headers)
        except httpx.HTTPError as exc:
            logger.warning("%s unreachable: %s", service, type(exc).__name__)
            raise UpstreamError(
                503, "dependency_unavailable", f"the {service} is unreachable"
            ) from exc
        if response.status_code < 400:
            return response
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code >= 500:
            logger.warning("%s answered %s on %s %s", service, response.status_code, method, path)
        raise UpstreamError(
            response.status_code,
            str(body.get("error") or "upstream_error"),
            str(body.get("message") or f"the {service} answered {response.status_code}"),
            list(body.get("details") or []),
        )
