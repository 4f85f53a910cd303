"""The API gateway app: wiring only. `create_app(settings)` builds it; the lifespan creates
every resource (pools, clients, publisher, relay) and keeps them on `app.state.gateway`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError as SQLAlchemyInterfaceError
from sqlalchemy.exc import OperationalError as SQLAlchemyOperationalError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.api_gateway import console
from services.api_gateway.api_keys import ApiKeyStore
from services.api_gateway.breaker import CircuitBreaker
from services.api_gateway.clients import (
    Dependency,
    TemplateLookup,
    UserClient,
    create_user_session,
)
from services.api_gateway.console.resources import Console
from services.api_gateway.deps import RATE_LIMIT_STATE, Gateway
from services.api_gateway.idempotency import IdempotencyStore
from services.api_gateway.operators import OperatorAuth
from services.api_gateway.outbox import Outbox, broker_ready
from services.api_gateway.rate_limit import RateLimiter
from services.api_gateway.routes import router
from services.api_gateway.send import SendService
from services.api_gateway.settings import GatewaySettings
from services.api_gateway.store import NotificationStore
from shared.db import DB_UNAVAILABLE, create_asyncpg_pool, create_engine
from shared.envelope import error_body
from shared.errors import DependencyUnavailable
from shared.health import HealthCheck, health_router
from shared.http import create_service_app
from shared.http_client import create_http_client, internal_headers
from shared.messaging.publisher import Publisher
from shared.redis import RedisKeys, check_redis, create_redis
from shared.settings import Settings
from shared.template_client import TemplateClient

logger = logging.getLogger("api_gateway.app")

SERVICE = "api_gateway"

DESCRIPTION = """
The only public entry for sending notifications. Authenticate with an API key
(`Authorization: Bearer <key>` or `X-API-Key`). Every response uses the common envelope
`{success, data, error, message, meta}`; send responses carry `RateLimit-Limit`,
`RateLimit-Remaining` and `RateLimit-Reset`.
"""


def gateway_settings(settings: Settings | None) -> GatewaySettings:
    if settings is None:
        return GatewaySettings()
    if isinstance(settings, GatewaySettings):
        return settings
    # A plain `Settings` (e.g. the tests' base settings): keep its values, add our defaults,
    # without reading the environment again.
    return GatewaySettings.model_validate(settings.model_dump())


class RateLimitHeadersMiddleware:
    """Adds the `RateLimit-*` headers a route computed to whatever response it produced,
    errors included, so no handler has to remember them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})

        async def send_with_headers(message: Message) -> None:
            extra = state.get(RATE_LIMIT_STATE)
            if message["type"] == "http.response.start" and extra:
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                for name, value in extra.items():
                    raw = name.lower().encode()
                    if raw not in present:
                        headers.append((raw, value.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def _database_unavailable(_: Request, exc: Exception) -> JSONResponse:
    """PostgreSQL down is a 503 the client may retry (nothing was accepted), not a 500."""
    logger.warning("database unavailable: %s", type(exc).__name__)
    return JSONResponse(
        error_body("dependency_unavailable", "the database is unavailable; try again shortly"),
        status_code=503,
        headers={"Retry-After": "1"},
    )


async def _connect_publisher(publisher: Publisher) -> None:
    """Try once at startup; if the broker is down the relay keeps trying, and sends still
    succeed through the outbox."""
    try:
        await asyncio.wait_for(publisher.connect(), 10)
    except Exception as exc:
        logger.warning("broker unavailable at startup (%s); the relay will retry", exc)
        await publisher.close()


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: GatewaySettings = app.state.settings
    pool = await create_asyncpg_pool(settings, application_name=SERVICE)
    engine = create_engine(
        settings.model_copy(update={"db_pool_size": 2, "db_max_overflow": 3}),
        application_name=f"{SERVICE}-relay",
    )
    redis = create_redis(settings)
    keys = RedisKeys(settings.redis_key_prefix)
    publisher = Publisher(settings, connection_name=SERVICE)
    await _connect_publisher(publisher)

    def breaker(name: str) -> CircuitBreaker:
        return CircuitBreaker(
            name,
            failure_threshold=settings.breaker_failure_threshold,
            reset_seconds=settings.breaker_reset_seconds,
        )

    def dependency(name: str) -> Dependency:
        return Dependency(
            name,
            breaker(name),
            retries=settings.gateway_dependency_retries,
            backoff_ms=settings.gateway_dependency_backoff_ms,
        )

    timeout = settings.gateway_dependency_timeout_seconds
    user_http = create_user_session(
        settings.user_service_url,
        internal_key=settings.internal_api_key.get_secret_value(),
        timeout_seconds=timeout,
    )
    template_http = create_http_client(
        settings,
        base_url=settings.template_service_url,
        headers=internal_headers(settings),
        timeout_seconds=timeout,
    )
    # `TemplateLookup` caches active versions in front of the breaker (a cached answer must
    # not fail while the template service is down), so the client's own active cache is off.
    template_client = TemplateClient(settings, template_http, active_ttl_seconds=0)
    redis_breaker = CircuitBreaker("redis", failure_threshold=3, reset_seconds=5.0)
    idempotency = IdempotencyStore(
        pool,
        ttl_seconds=settings.idempotency_ttl_seconds,
        pending_timeout_seconds=settings.idempotency_pending_timeout_seconds,
    )
    outbox = Outbox(
        settings,
        publisher=publisher,
        pool=pool,
        engine=engine,
        purge_expired=idempotency.purge_expired,
    )
    store = NotificationStore(pool)
    users = UserClient(
        user_http,
        dependency("user_service"),
        ttl_seconds=settings.gateway_contact_cache_ttl_seconds,
    )
    templates = TemplateLookup(
        template_client,
        dependency("template_service"),
        ttl_seconds=settings.template_active_ttl_seconds,
    )
    app.state.gateway = Gateway(
        settings=settings,
        pool=pool,
        engine=engine,
        redis=redis,
        keys=keys,
        publisher=publisher,
        api_keys=ApiKeyStore(pool, cache_ttl_seconds=settings.api_key_cache_ttl_seconds),
        limiter=RateLimiter(redis, redis_breaker),
        store=store,
        outbox=outbox,
        send=SendService(
            settings,
            store=store,
            idempotency=idempotency,
            users=users,
            templates=templates,
            outbox=outbox,
        ),
    )
    outbox.start()
    # --- operator API and console (services/api_gateway/console/) ---------------------
    app.state.operators = OperatorAuth(
        settings, ApiKeyStore(pool, cache_ttl_seconds=settings.api_key_cache_ttl_seconds)
    )
    app.state.console = Console.open(settings, pool)
    try:
        yield
    finally:
        await app.state.console.aclose()
        await outbox.stop()
        await publisher.close()
        await template_client.aclose()
        await template_http.aclose()
        await user_http.close()
        await redis.aclose()
        await engine.dispose()
        await pool.close()


def _checks(app: FastAPI) -> Mapping[str, HealthCheck]:
    gateway: Gateway = app.state.gateway

    async def db() -> None:
        await gateway.pool.fetchval("SELECT 1")

    async def broker() -> None:
        if not broker_ready(gateway.publisher):
            raise DependencyUnavailable("broker")

    return {"db": db, "redis": lambda: check_redis(gateway.redis), "broker": broker}


def create_app(settings: Settings | None = None) -> FastAPI:
    resolved = gateway_settings(settings)
    app = create_service_app(
        service=SERVICE,
        title="Notifications API gateway",
        description=DESCRIPTION,
        lifespan=lifespan,
        max_body_bytes=resolved.max_body_bytes,
        settings=resolved,
    )
    app.state.settings = resolved
    for error in (*DB_UNAVAILABLE, SQLAlchemyOperationalError, SQLAlchemyInterfaceError):
        app.add_exception_handler(error, _database_unavailable)
    app.add_middleware(RateLimitHeadersMiddleware)
    app.include_router(router)
    app.include_router(health_router(SERVICE, lambda: _checks(app)))
    # --- operator API and console (services/api_gateway/console/) -------------------------
    for console_router in console.routers():
        app.include_router(console_router)
    app.mount(console.STATIC_URL, console.static_files(), name="console-static")
    return app
