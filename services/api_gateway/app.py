"""The API gateway app: wiring only. `create_app(settings)` builds it; the lifespan creates
every resource (pools, clients, publisher, relay) and keeps them on `app.state.gateway`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError as SQLAlchemyInterfaceError
from sqlalchemy.exc import OperationalError as SQLAlchemyOperationalError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.api_gateway import console, unsubscribe
from services.api_gateway.api_keys import ApiKeyStore
from services.api_gateway.breaker import CircuitBreaker
from services.api_gateway.broadcasts import Broadcasts
from services.api_gateway.clients import Dependency, TemplateLookup
from services.api_gateway.console.resources import Console
from services.api_gateway.deps import RATE_LIMIT_STATE, Gateway
from services.api_gateway.idempotency import IdempotencyStore
from services.api_gateway.operators import OperatorAuth
from services.api_gateway.outbox import Outbox, broker_ready
from services.api_gateway.rate_limit import RateLimiter, RateLimits
from services.api_gateway.reconciler import Reconciler, queue_depth_of
from services.api_gateway.routes import router
from services.api_gateway.send import SendService
from services.api_gateway.settings import GatewaySettings
from services.api_gateway.store import NotificationStore
from services.api_gateway.topic_routes import router as topic_router
from services.api_gateway.topic_store import TopicStore
from shared.auth import open_token_verifier
from shared.contacts import ContactDirectory, create_user_session, listen_for_changes
from shared.db import DB_UNAVAILABLE, create_asyncpg_pool
from shared.envelope import error_body
from shared.errors import DependencyUnavailable
from shared.health import HealthCheck, health_router
from shared.http import create_service_app
from shared.http_client import create_http_client, internal_headers
from shared.messaging.publisher import Publisher
from shared.redis import RedisKeys, check_redis, create_redis
from shared.settings import Settings, widen
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
    return widen(settings, GatewaySettings)


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


def _dependency(settings: GatewaySettings, name: str) -> Dependency:
    """A user/template service call policy: its own breaker, retries with backoff."""
    breaker = CircuitBreaker(
        name,
        failure_threshold=settings.breaker_failure_threshold,
        reset_seconds=settings.breaker_reset_seconds,
    )
    return Dependency(
        name,
        breaker,
        retries=settings.gateway_dependency_retries,
        backoff_ms=settings.gateway_dependency_backoff_ms,
    )


async def _contacts(settings: GatewaySettings, stack: AsyncExitStack) -> ContactDirectory:
    """Contacts behind the user service's breaker, dropped from the cache as soon as the user
    service announces a change."""
    session = create_user_session(
        settings.user_service_url,
        internal_key=settings.internal_api_key.get_secret_value(),
        timeout_seconds=settings.gateway_dependency_timeout_seconds,
    )
    stack.push_async_callback(session.close)
    contacts = ContactDirectory(
        session,
        ttl_seconds=settings.gateway_contact_cache_ttl_seconds,
        guard=_dependency(settings, "user_service").call,
    )
    listener = asyncio.create_task(
        listen_for_changes(settings.redis_url, RedisKeys(settings.redis_key_prefix), contacts),
        name="contact-changes",
    )
    stack.push_async_callback(_cancel, listener)
    return contacts


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _template_lookup(settings: GatewaySettings, stack: AsyncExitStack) -> TemplateLookup:
    http = create_http_client(
        settings,
        base_url=settings.template_service_url,
        headers=internal_headers(settings),
        timeout_seconds=settings.gateway_dependency_timeout_seconds,
    )
    stack.push_async_callback(http.aclose)
    # `TemplateLookup` caches active versions in front of the breaker (a cached answer must
    # not fail while the template service is down), so the client's own active cache is off.
    client = TemplateClient(settings, http, active_ttl_seconds=0)
    stack.push_async_callback(client.aclose)
    return TemplateLookup(
        client,
        _dependency(settings, "template_service"),
        ttl_seconds=settings.template_active_ttl_seconds,
    )


async def _build(settings: GatewaySettings, stack: AsyncExitStack) -> Gateway:
    """Create every resource; `stack` closes them in reverse order at shutdown."""
    pool = await create_asyncpg_pool(settings, application_name=SERVICE)
    stack.push_async_callback(pool.close)
    redis = create_redis(settings)
    stack.push_async_callback(redis.aclose)
    publisher = Publisher(settings, connection_name=SERVICE)
    await _connect_publisher(publisher)
    stack.push_async_callback(publisher.close)
    idempotency = IdempotencyStore(
        pool,
        ttl_seconds=settings.idempotency_ttl_seconds,
        pending_timeout_seconds=settings.idempotency_pending_timeout_seconds,
    )
    store = NotificationStore(pool)

    async def purge_expired() -> None:
        await idempotency.purge_expired()
        await store.purge_collapse_windows()

    outbox = Outbox(settings, publisher=publisher, pool=pool, purge_expired=purge_expired)
    send = SendService(
        settings,
        store=store,
        idempotency=idempotency,
        contacts=await _contacts(settings, stack),
        templates=await _template_lookup(settings, stack),
        outbox=outbox,
    )
    outbox.release_check = send.release_decision
    topics = TopicStore(pool)
    broadcasts = Broadcasts(
        settings, topics=topics, idempotency=idempotency, templates=send.templates, sends=send
    )
    limiter = RateLimiter(redis, CircuitBreaker("redis", failure_threshold=3, reset_seconds=5.0))
    return Gateway(
        settings=settings,
        pool=pool,
        redis=redis,
        publisher=publisher,
        api_keys=ApiKeyStore(pool, cache_ttl_seconds=settings.api_key_cache_ttl_seconds),
        rate_limits=RateLimits(limiter, RedisKeys(settings.redis_key_prefix), settings),
        store=store,
        outbox=outbox,
        send=send,
        topics=topics,
        broadcasts=broadcasts,
    )


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with AsyncExitStack() as stack:
        settings: GatewaySettings = app.state.settings
        gateway = await _build(settings, stack)
        app.state.gateway = gateway
        gateway.outbox.start()
        stack.push_async_callback(gateway.outbox.stop)
        reconciler = Reconciler(settings, gateway.pool, queue_depth_of(gateway.publisher))
        reconciler.start()
        stack.push_async_callback(reconciler.stop)
        gateway.broadcasts.start()
        stack.push_async_callback(gateway.broadcasts.stop)
        # --- operator API and console (services/api_gateway/console/) -----------------
        tokens = await stack.enter_async_context(open_token_verifier(settings, redis=gateway.redis))
        app.state.operators = OperatorAuth(settings, gateway.api_keys, tokens)
        app.state.console = Console.open(settings, gateway.pool)
        stack.push_async_callback(app.state.console.aclose)
        # --- unsubscribe links (services/api_gateway/unsubscribe.py) ------------------
        app.state.unsubscriber = await stack.enter_async_context(
            unsubscribe.open_unsubscriber(settings)
        )
        yield


def _checks(app: FastAPI) -> Mapping[str, HealthCheck]:
    gateway: Gateway = app.state.gateway

    async def db() -> None:
        await gateway.pool.fetchval("SELECT 1")

    async def broker() -> None:
        if not broker_ready(gateway.publisher):
            raise DependencyUnavailable("broker")

    return {"db": db, "redis": lambda: check_redis(gateway.redis), "broker": broker}


SUBSCRIBER_LIST_BYTES = 512 * 1024


def create_app(settings: Settings | None = None) -> FastAPI:
    resolved = gateway_settings(settings)
    app = create_service_app(
        service=SERVICE,
        title="Notifications API gateway",
        description=DESCRIPTION,
        lifespan=lifespan,
        max_body_bytes=resolved.max_body_bytes,
        max_header_bytes=resolved.max_header_bytes,
        # 10,000 user ids per call do not fit the default limit.
        larger_bodies=[(r"/v1/topics/[^/]+/subscribers", SUBSCRIBER_LIST_BYTES)],
        settings=resolved,
    )
    app.state.settings = resolved
    for error in (*DB_UNAVAILABLE, SQLAlchemyOperationalError, SQLAlchemyInterfaceError):
        app.add_exception_handler(error, _database_unavailable)
    app.add_middleware(RateLimitHeadersMiddleware)
    app.include_router(router)
    app.include_router(topic_router)
    app.include_router(health_router(SERVICE, lambda: _checks(app)))
    # --- operator API and console (services/api_gateway/console/) -------------------------
    for console_router in console.routers():
        app.include_router(console_router)
    app.mount(console.STATIC_URL, console.static_files(), name="console-static")
    # --- unsubscribe links (services/api_gateway/unsubscribe.py) --------------------------
    app.include_router(unsubscribe.router)
    return app
