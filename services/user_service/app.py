"""The user service app: accounts, authentication, preferences and devices (port 3001)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI

from services.user_service.accounts import open_accounts
from services.user_service.routes import internal, public
from services.user_service.settings import user_service_settings
from shared.db import check_database
from shared.health import HealthCheck, health_router
from shared.http import create_service_app
from shared.redis import check_redis
from shared.settings import Settings

SERVICE = "user_service"


def create_app(settings: Settings | None = None) -> FastAPI:
    service_settings = user_service_settings(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_accounts(service_settings) as resources:
            await resources.accounts.passwords.prepare()
            app.state.engine = resources.engine
            app.state.redis = resources.redis
            app.state.accounts = resources.accounts
            yield

    app = create_service_app(
        service=SERVICE,
        title="User service",
        description="Users, authentication, notification preferences and push devices.",
        lifespan=lifespan,
        docs_url="/api/docs",
        openapi_url="/api/openapi.json",
        max_body_bytes=service_settings.max_body_bytes,
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
    return app
