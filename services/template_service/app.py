"""The template service app: versioned, localised templates and safe rendering (port 3000)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI

from services.template_service.catalog import TemplateCatalog
from services.template_service.routes import internal_router, router
from services.template_service.settings import TemplateSettings, template_settings
from shared.db import check_database, create_engine, create_session_factory
from shared.health import HealthCheck, health_router
from shared.http import create_service_app
from shared.settings import Settings

SERVICE = "template_service"


def create_app(settings: Settings | None = None) -> FastAPI:
    service_settings: TemplateSettings = template_settings(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(service_settings, application_name=SERVICE)
        app.state.engine = engine
        app.state.catalog = TemplateCatalog(create_session_factory(engine), service_settings)
        try:
            yield
        finally:
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
    )
    app.state.settings = service_settings

    def checks() -> Mapping[str, HealthCheck]:
        return {"db": partial(check_database, app.state.engine)}

    app.include_router(health_router(SERVICE, checks, paths=("/api/v1/health",)))
    app.include_router(router)
    app.include_router(internal_router)
    return app
