"""The user service app: accounts, authentication, preferences and devices (port 3001)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

from fastapi import FastAPI

from services.user_service.accounts import open_accounts
from services.user_service.routes import internal, public, well_known
from services.user_service.settings import user_service_settings
from services.user_service.tokens import SigningKeys, load_signing_keys
from shared.db import check_database
from shared.health import HealthCheck, health_router
from shared.http import create_service_app
from shared.redis import check_redis
from shared.settings import Settings

SERVICE = "user_service"


def create_app(settings: Settings | None = None, *, keys: SigningKeys | None = None) -> FastAPI:
    """The app. `keys`: the signing keys, if already loaded (`__main__` loads them first, to
    refuse a bad key before serving); otherwise the lifespan loads them."""
    service_settings = user_service_settings(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        signing_keys = keys if keys is not None else load_signing_keys(service_settings)
        async with open_accounts(service_settings, signing_keys) as resources:
            await resources.accounts.passwords.prepare()
            app.state.engine = resources.engine
            app.state.redis = resources.redis
            app.state.accounts = resources.accounts
            app.state.auth = resources.auth
            app.state.token_verifier = resources.auth.verifier()
            yield

    app = create_service_app(
        service=SERVICE,
        title="User service",
        description="Users, authentication, notification preferences and push devices.",
        lifespan=lifespan,
        docs_url="/api/docs",
        redoc_url="/api/redoc",
        openapi_url="/api/openapi.json",
        settings=service_settings,
        max_body_bytes=service_settings.max_body_bytes,
        max_header_bytes=service_settings.max_header_bytes,
    )
    app.state.settings = service_settings

    def checks() -> Mapping[str, HealthCheck]:
        return {
            "db": partial(check_database, app.state.engine),
            "redis": partial(check_redis, app.state.redis),
        }

    app.include_router(health_router(SERVICE, checks, paths=("/api/v1/health",)))
    app.include_router(public.router)
    app.include_router(internal.router)
    app.include_router(well_known.router)
    _document_security(app)
    return app


# Routes anyone may call; every other `/api/v1` route needs a bearer token.
_OPEN_ROUTES = {
    ("post", "/api/v1/users"),
    ("post", "/api/v1/auth/login"),
    ("post", "/api/v1/auth/refresh"),
    ("post", "/api/v1/auth/logout"),
    ("get", "/api/v1/health"),
}


def _document_security(app: FastAPI) -> None:
    """Declare the bearer token and the internal key in the OpenAPI document, so Swagger UI
    offers "Authorize" and sends them. (`shared.auth` reads the headers itself and keeps them
    out of each route's parameters.)"""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = FastAPI.openapi(app)
        schema.setdefault("components", {})["securitySchemes"] = {
            "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
            "internalApiKey": {"type": "apiKey", "in": "header", "name": "X-Internal-API-Key"},
        }
        for path, operations in schema.get("paths", {}).items():
            for method, operation in operations.items():
                if path.startswith("/internal/"):
                    operation["security"] = [{"internalApiKey": []}]
                elif path.startswith("/api/v1/") and (method, path) not in _OPEN_ROUTES:
                    operation["security"] = [{"bearerAuth": []}]
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
