"""The template service app: versioned, localised templates and safe rendering (port 3000)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI

from services.template_service.catalog import TemplateCatalog, TemplateRenderer
from services.template_service.rate_limit import RenderLimiter
from services.template_service.routes import internal_router, router
from services.template_service.settings import TemplateSettings, template_settings
from shared.auth import open_token_verifier
from shared.db import check_database, create_engine, create_session_factory
from shared.health import HealthCheck, health_router
from shared.http import create_service_app
from shared.redis import create_redis
from shared.settings import Settings

SERVICE = "template_service"


def create_app(settings: Settings | None = None) -> FastAPI:
    service_settings: TemplateSettings = template_settings(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(service_settings, application_name=SERVICE)
        redis = create_redis(service_settings)
        renderer = TemplateRenderer.from_settings(service_settings)
        app.state.engine = engine
        app.state.catalog = TemplateCatalog(
            create_session_factory(engine), service_settings, renderer
        )
        app.state.render_limiter = RenderLimiter(
            redis,
            service_settings.redis_key_prefix,
            service_settings.template_render_rate_limit_per_minute,
        )
        try:
            await renderer.start()
            # Access tokens: the user service's public keys, token versions from Redis.
            async with open_token_verifier(service_settings, redis=redis) as verifier:
                app.state.token_verifier = verifier
                yield
        finally:
            await renderer.close()
            await redis.aclose()
            await engine.dispose()

    app = create_service_app(
        service=SERVICE,
        title="Template service",
        description="Versioned, localised email and push templates, rendered in a sandbox.",
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
        return {"db": partial(check_database, app.state.engine)}

    app.include_router(health_router(SERVICE, checks, paths=("/api/v1/health",)))
    app.include_router(router)
    app.include_router(internal_router)
    return app
