"""One delivery worker = a small HTTP side and the consumer runtime, in one process.

Both workers are built here; each passes only its channel and a `sender_factory`. The lifespan
owns every resource: the asyncpg pool and `StatusStore`, the sender, the `ConsumerRuntime`
and the dead-letter admin. Shutdown runs in reverse: stop consuming and let the messages in
hand finish (up to `worker_shutdown_seconds`), then close the sender and the pool, so a
message is never half-handled by a closed resource.

Routes: `GET /health` (database, broker, consumer), `/metrics`, and the internal-key guarded
`/admin/dlq` routes from `shared.messaging.dead_letters` (the gateway's operator API calls
them). The lifespan also samples queue depths into `/metrics` (`queue_depth.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from fastapi import APIRouter, FastAPI

from shared.contacts import ContactDirectory, create_user_session, listen_for_changes
from shared.db import create_asyncpg_pool
from shared.health import HealthCheck, health_router
from shared.http import create_service_app
from shared.messaging.consumer import ConsumerRuntime
from shared.messaging.dead_letters import DeadLetters, dead_letter_router
from shared.messaging.delivery import Sender
from shared.messaging.message import Channel
from shared.messaging.queue_depth import QueueDepthSampler, sampled_queues
from shared.notification_status import StatusStore
from shared.redis import RedisKeys
from shared.settings import Settings

logger = logging.getLogger("shared.messaging.worker")


SenderFactory = Callable[[Settings, FastAPI], Sender | Awaitable[Sender]]
"""Builds the channel's sender in the lifespan (it may keep helpers on `app.state`). The sender
may have an `async aclose()`, called at shutdown after the last message is handled."""


class _Down(Exception):
    """Raised by a health check whose dependency is not usable."""


def create_worker_app(
    *,
    service: str,
    channel: Channel,
    settings: Settings,
    sender_factory: SenderFactory,
    extra_routers: Iterable[APIRouter] = (),
    title: str,
    description: str = "",
    health_paths: tuple[str, ...] = ("/health",),
) -> FastAPI:
    """The worker app. `app.state` holds settings, status_store, sender, runtime and
    dead_letters once the lifespan has started."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await create_asyncpg_pool(settings, application_name=service)
        app.state.status_store = status_store = StatusStore(pool)
        sender: Sender | None = None
        runtime: ConsumerRuntime | None = None
        contacts = await _contacts(settings) if settings.delivery_policy_check else None
        depth_sampler: QueueDepthSampler | None = None
        try:
            built = sender_factory(settings, app)
            sender = await built if inspect.isawaitable(built) else built
            app.state.sender = sender
            runtime = ConsumerRuntime(
                settings=settings,
                channel=channel,
                sender=sender,
                status_store=status_store,
                service=service,
                contacts=contacts[0] if contacts else None,
            )
            app.state.runtime = runtime
            await runtime.start()
            assert runtime.connection is not None
            app.state.dead_letters = DeadLetters(
                connection=runtime.connection,
                publisher=runtime.publisher,
                status_store=status_store,
                channel=channel,
                service=service,
            )
            depth_sampler = QueueDepthSampler(
                runtime.connection, sampled_queues(channel, settings.retry_delay_levels_ms)
            )
            depth_sampler.start()
            logger.info("%s worker started", service)
            yield
        finally:
            if depth_sampler is not None:
                await depth_sampler.stop()
            app.state.dead_letters = None
            if runtime is not None:
                await runtime.stop()
            if sender is not None:
                await _close_sender(sender)
            if contacts is not None:
                await _close_contacts(*contacts)
            await pool.close()
            logger.info("%s worker stopped", service)

    app = create_service_app(
        service=service,
        title=title,
        description=description,
        lifespan=lifespan,
        max_body_bytes=settings.max_body_bytes,
        max_header_bytes=settings.max_header_bytes,
        settings=settings,
    )
    app.state.settings = settings
    app.state.dead_letters = None
    app.include_router(health_router(service, lambda: worker_checks(app), paths=health_paths))
    app.include_router(dead_letter_router())
    for router in extra_routers:
        app.include_router(router)
    return app


def worker_checks(app: FastAPI) -> Mapping[str, HealthCheck]:
    """db: a `SELECT 1`; broker: both AMQP connections open; consumer: subscribed (or paused
    while the provider is down) and not shutting down."""
    runtime: ConsumerRuntime | None = getattr(app.state, "runtime", None)

    async def db() -> None:
        store: StatusStore | None = getattr(app.state, "status_store", None)
        if store is None:
            raise _Down("no database pool")
        await store.db.fetchval("SELECT 1")

    async def broker() -> None:
        if runtime is None or not runtime.publisher.is_connected:
            raise _Down("publisher not connected")
        if runtime.connection is None or runtime.connection.is_closed:
            raise _Down("consumer connection closed")

    async def consumer() -> None:
        # Paused because the provider is down is healthy: restarting the worker cannot help.
        if runtime is None or not (runtime.is_consuming or runtime.is_paused):
            raise _Down("not consuming")

    return {"db": db, "broker": broker, "consumer": consumer}


async def _contacts(
    settings: Settings,
) -> tuple[ContactDirectory, aiohttp.ClientSession, asyncio.Task[None]]:
    """The user's current contact for the delivery-time policy, with change announcements."""
    session = create_user_session(
        settings.user_service_url,
        internal_key=settings.internal_api_key.get_secret_value(),
        timeout_seconds=settings.http_timeout_seconds,
    )
    contacts = ContactDirectory(session, ttl_seconds=settings.worker_contact_cache_ttl_seconds)
    listener = asyncio.create_task(
        listen_for_changes(settings.redis_url, RedisKeys(settings.redis_key_prefix), contacts),
        name="contact-changes",
    )
    return contacts, session, listener


async def _close_contacts(
    _: ContactDirectory, session: aiohttp.ClientSession, listener: asyncio.Task[None]
) -> None:
    listener.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await listener
    await session.close()


async def _close_sender(sender: Any) -> None:
    aclose = getattr(sender, "aclose", None)
    if aclose is None:
        return
    try:
        await aclose()
    except Exception as exc:  # shutdown goes on; the process is ending anyway
        logger.warning("closing the sender failed: %s", type(exc).__name__)
