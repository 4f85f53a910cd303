"""The service app factory: one place that wires the envelope, correlation ids, traces, body
and header limits, metrics, health and the (offline) API docs into every FastAPI app.

The middlewares are plain ASGI (not `BaseHTTPMiddleware`) because they sit on the hot path of
every request and must not copy bodies or spawn tasks.

Request headers over `max_header_bytes` in total (names and values) get 431 in two places:
the middleware measures the headers the server parsed, exactly, in any ASGI server; and
`serve()` runs uvicorn with `head_limited_protocol`, which stops reading a request head that
passes the limit (plus room for the request line) and answers 431 before the parser buffers
more, so an 8 MB header costs the service nothing. uvicorn's httptools parser has no limit of
its own, and its h11 limit answers 400, not 431.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

import orjson
import uvicorn
from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

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
from shared.tracing import TracingMiddleware, setup_tracing

_CORRELATION_HEADER_BYTES = CORRELATION_HEADER.lower().encode()
MAX_HEADER_BYTES = 16 * 1024
# Room for the request line (method, target, version) and the `: ` and CRLF of each header,
# on top of `max_header_bytes`, before the server stops reading a request head.
REQUEST_LINE_ALLOWANCE = 8 * 1024


class RequestContextMiddleware:
    """Sets the correlation id, enforces the body and header size limits and records request
    metrics."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        service: str,
        max_body_bytes: int,
        max_header_bytes: int = MAX_HEADER_BYTES,
        larger_bodies: Sequence[tuple[str, int]] = (),
    ) -> None:
        self.app = app
        self.service = service
        self.max_body_bytes = max_body_bytes
        self.max_header_bytes = max_header_bytes
        self.larger_bodies = [(re.compile(path), limit) for path, limit in larger_bodies]

    def _body_limit(self, path: str) -> int:
        for pattern, limit in self.larger_bodies:
            if pattern.fullmatch(path):
                return limit
        return self.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw_id = None
        content_length = None
        header_bytes = 0
        for name, value in scope["headers"]:
            header_bytes += len(name) + len(value)
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
            if header_bytes > self.max_header_bytes:
                await _send_error(send_with_context, 431, *_HEADERS_TOO_LARGE)
                return
            body_limit = (
                self._body_limit(scope["path"]) if self.larger_bodies else self.max_body_bytes
            )
            if content_length is not None:
                if _too_long(content_length, body_limit):
                    await _send_too_large(send_with_context)
                    return
            elif scope["method"] in ("POST", "PUT", "PATCH", "DELETE"):
                buffered = await _read_limited(receive, body_limit)
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


_HEADERS_TOO_LARGE = ("headers_too_large", "the request headers are too large")


async def _send_too_large(send: Send) -> None:
    await _send_error(send, 413, "payload_too_large", "the request body is too large")


async def _send_error(send: Send, status: int, code: str, message: str) -> None:
    body = orjson.dumps(error_body(code, message))
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class _HeadLimitedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol, counting the bytes of each request head as they arrive.

    Counting happens before the parser sees the bytes, so a head that never ends is cut off at
    `head_limit` instead of buffered. Bodies are not counted: a head ends at its blank line.
    """

    head_limit = MAX_HEADER_BYTES + REQUEST_LINE_ALLOWANCE

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes = 0
        self._in_head = True
        self._tail = b""
        self._refused = False

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._in_head:
            window = self._tail + data
            end = window.find(b"\r\n\r\n")
            self._head_bytes += len(data) if end < 0 else max(end + 4 - len(self._tail), 0)
            if self._head_bytes > self.head_limit:
                self._refuse()
                return
            self._tail = window[-3:]
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._in_head, self._head_bytes, self._tail = False, 0, b""
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_head = True
        super().on_message_complete()

    def _refuse(self) -> None:
        self._refused = True
        body = orjson.dumps(error_body(*_HEADERS_TOO_LARGE))
        head = (
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n"
            b"connection: close\r\n\r\n"
        )
        self.transport.write(head + body)
        self.transport.close()


def head_limited_protocol(max_header_bytes: int) -> type[asyncio.Protocol]:
    """The HTTP protocol `serve()` runs: request heads over `max_header_bytes` (plus
    `REQUEST_LINE_ALLOWANCE`) are answered 431 and the connection closed."""
    return type(
        "HeadLimitedHttpTools",
        (_HeadLimitedHttpTools,),
        {"head_limit": max_header_bytes + REQUEST_LINE_ALLOWANCE},
    )


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
    max_header_bytes: int = MAX_HEADER_BYTES,
    larger_bodies: Sequence[tuple[str, int]] = (),
    settings: Settings | None = None,
    **kwargs: Any,
) -> FastAPI:
    """A FastAPI app with the envelope handlers, request context and `/metrics` installed.

    Swagger UI (`docs_url`), ReDoc (`redoc_url`) and the OpenAPI document are served from
    local assets when `settings.docs_exposed` (the process settings if none are given).
    `larger_bodies` lists (path regex, byte limit) for the few routes whose bodies may be larger
    than `max_body_bytes` (a list of 10,000 ids).
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
    app.add_middleware(
        RequestContextMiddleware,
        service=service,
        max_body_bytes=max_body_bytes,
        max_header_bytes=max_header_bytes,
        larger_bodies=larger_bodies,
    )
    # Outermost, so the request's log lines (and its error handlers) run inside its span.
    app.add_middleware(TracingMiddleware, service=service)
    app.include_router(metrics_router)
    return app


async def empty_lifespan(_: FastAPI) -> AsyncIterator[None]:
    yield


def uvicorn_config(app: FastAPI, *, settings: Settings, port: int) -> uvicorn.Config:
    """How every service runs under uvicorn (`serve`, and tests that serve an app for real).

    Forwarded headers (`X-Forwarded-For`, `X-Forwarded-Proto`) are uvicorn's to apply, and only
    from the proxies in `FORWARDED_ALLOW_IPS`: from anyone else they are ignored, so a client
    cannot pick the address that rate limits and logs see. Unset, no proxy is trusted (uvicorn
    itself would trust 127.0.0.1, i.e. anything running on the same machine). The
    graceful-shutdown timeout leaves a worker time to finish the messages in hand.
    """
    trusted = settings.forwarded_allow_ips.strip()
    return uvicorn.Config(
        app,
        host=settings.bind_host,
        port=port,
        log_config=None,
        access_log=False,
        proxy_headers=bool(trusted),
        forwarded_allow_ips=trusted or [],
        http=head_limited_protocol(settings.max_header_bytes),
        timeout_graceful_shutdown=int(settings.worker_shutdown_seconds) + 5,
    )


def serve(app: FastAPI, *, service: str, settings: Settings, port: int) -> None:
    """Run one service under uvicorn with the shared logging and tracing: every `__main__`
    calls this."""
    setup_logging(service, settings.log_level, settings.log_format)
    setup_tracing(service, settings)
    uvicorn.Server(uvicorn_config(app, settings=settings, port=port)).run()
