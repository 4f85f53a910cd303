"""The service app factory: one place that wires the envelope, correlation ids, body limits,
metrics, health and the (offline) API docs into every FastAPI app.

The middlewares are plain ASGI (not `BaseHTTPMiddleware`) because they sit on the hot path of
every request and must not copy bodies or spawn tasks.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.docs import install_docs
from shared.envelope import error_body
from shared.errors import install_error_handlers
from shared.logging import (
    CORRELATION_HEADER,
    clean_correlation_id,
    correlation_id_var,
    setup_logging,
)
from shared.metrics import HTTP_LATENCY, HTTP_REQUESTS, metrics_router
from shared.settings import Settings, get_settings

_CORRELATION_HEADER_BYTES = CORRELATION_HEADER.lower().encode()


class RequestContextMiddleware:
    """Sets the correlation id, enforces the body size limit and records request metrics."""

    def __init__(self, app: ASGIApp, *, service: str, max_body_bytes: int) -> None:
        self.app = app
        self.service = service
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw_id = None
        content_length = None
        for name, value in scope["headers"]:
            if name == _CORRELATION_HEADER_BYTES:
                raw_id = value.decode("latin-1")
            elif name == b"content-length":
                content_length = value
        correlation_id = clean_correlation_id(raw_id)
        token = correlation_id_var.set(correlation_id)
        started = time.perf_counter()
        status_holder = [500]
        header_value = correlation_id.encode()

        async def send_with_context(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder[0] = message["status"]
                headers = list(message.get("headers", []))
                headers.append((_CORRELATION_HEADER_BYTES, header_value))
                message = {**message, "headers": headers}
            await send(message)

        try:
            if content_length is not None:
                if _too_long(content_length, self.max_body_bytes):
                    await _send_too_large(send_with_context)
                    return
            elif scope["method"] in ("POST", "PUT", "PATCH"):
                buffered = await _read_limited(receive, self.max_body_bytes)
                if buffered is None:
                    await _send_too_large(send_with_context)
                    return
                receive = _replay(buffered, receive)
            await self.app(scope, receive, send_with_context)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            HTTP_REQUESTS.labels(self.service, scope["method"], template, status_holder[0]).inc()
            HTTP_LATENCY.labels(self.service, template).observe(time.perf_counter() - started)
            correlation_id_var.reset(token)


async def _read_limited(receive: Receive, limit: int) -> bytes | None:
    """Read a body sent without Content-Length (chunked); None once it passes `limit`."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, original: Receive) -> Receive:
    """Hand the buffered body to the app, then defer to the server (for disconnects)."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return await original()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


def _too_long(content_length: bytes, limit: int) -> bool:
    try:
        return int(content_length) > limit
    except ValueError:
        return False


async def _send_too_large(send: Send) -> None:
    import orjson

    body = orjson.dumps(error_body("payload_too_large", "the request body is too large"))
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def create_service_app(
    *,
    service: str,
    title: str,
    version: str = "1.0.0",
    description: str = "",
    lifespan: Lifespan | None = None,
    docs_url: str = "/docs",
    redoc_url: str = "/redoc",
    openapi_url: str = "/openapi.json",
    max_body_bytes: int = 64 * 1024,
    settings: Settings | None = None,
    **kwargs: Any,
) -> FastAPI:
    """A FastAPI app with the envelope handlers, request context and `/metrics` installed.

    Swagger UI (`docs_url`), ReDoc (`redoc_url`) and the OpenAPI document are served from
    local assets when `settings.docs_exposed` (the process settings if none are given).
    """
    expose = (settings or get_settings()).docs_exposed
    app = FastAPI(
        title=title,
        version=version,
        description=description,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=openapi_url if expose else None,
        **kwargs,
    )
    if expose:
        install_docs(app, openapi_url=openapi_url, docs_url=docs_url, redoc_url=redoc_url)
    install_error_handlers(app)
    app.add_middleware(RequestContextMiddleware, service=service, max_body_bytes=max_body_bytes)
    app.include_router(metrics_router)
    return app


async def empty_lifespan(_: FastAPI) -> AsyncIterator[None]:
    yield


def serve(app: FastAPI, *, service: str, settings: Settings, port: int) -> None:
    """Run one service under uvicorn with the shared logging: every `__main__` calls this.

    The graceful-shutdown timeout leaves a worker time to finish the messages in hand.
    """
    import uvicorn

    setup_logging(service, settings.log_level, settings.log_format)
    uvicorn.run(
        app,
        host=settings.bind_host,
        port=port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(settings.worker_shutdown_seconds) + 5,
    )
