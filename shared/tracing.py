"""Distributed traces (OpenTelemetry): the one setup, and the few spans every service makes.

A trace starts at a service's HTTP request (or continues the caller's W3C `traceparent`),
travels in the AMQP headers (`traceparent`/`tracestate`) from the publish into the worker, and
covers the worker's status writes and the provider call; outgoing HTTP between the services
carries `traceparent` too. The spans are written here by hand with the API's
`propagate.inject/extract` instead of the instrumentation packages: the send path is the
system's bottleneck (Python CPU per message), we need five kinds of span, and the batched
consumer (one claim and one finish statement for many messages) needs per-message spans that
no auto-instrumentation would make. Each helper is a no-op that costs one flag test while
tracing is off.

Tracing is off unless `OTEL_EXPORTER_OTLP_ENDPOINT` is set: then `setup_tracing` (called by
`shared.http.serve`, so by every service at start) installs an SDK provider that batches spans
to `<endpoint>/v1/traces` (OTLP over HTTP/protobuf). Without it no provider exists, no span is
made and no header is added. The SDK reads its other `OTEL_*` variables itself (sampler,
batch sizes).

Attributes name notifications (id, channel, attempt, template code), routes and queues, never
a person: no email address, device token, user id in a path, or credential.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from types import MappingProxyType, SimpleNamespace
from typing import Any

import aiohttp
import httpx
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import INVALID_SPAN, Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.settings import Settings

INSTRUMENTATION_NAME = "notifications"
_PROPAGATOR = TraceContextTextMapPropagator()
_UNTRACED_PATHS = ("/metrics", "/health")

Attributes = Mapping[str, AttributeValue]


class _State:
    enabled = False
    tracer: Tracer = trace.NoOpTracer()
    provider: TracerProvider | None = None


def setup_tracing(service: str, settings: Settings) -> None:
    """Export this process's spans over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set."""
    endpoint = settings.otel_exporter_otlp_endpoint
    if not endpoint:
        return
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    provider = TracerProvider(
        resource=Resource.create({"service.name": service, "service.namespace": "notifications"})
    )
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces"))
    )
    use_tracer_provider(provider)


def use_tracer_provider(provider: TracerProvider | None) -> None:
    """Make `provider` the one every span of this process goes to (None: tracing off).

    Kept here rather than in OpenTelemetry's global, which can be set only once per process.
    """
    _State.provider = provider
    _State.enabled = provider is not None
    _State.tracer = (
        provider.get_tracer(INSTRUMENTATION_NAME) if provider is not None else trace.NoOpTracer()
    )


def enabled() -> bool:
    return _State.enabled


def current_trace_id() -> str | None:
    """The active span's trace id (32 hex characters), or None outside a span."""
    if not _State.enabled:
        return None
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


def span(
    name: str, *, kind: SpanKind = SpanKind.INTERNAL, attributes: Attributes | None = None
) -> AbstractContextManager[Span]:
    """A child of the current span for the block (no-op while tracing is off)."""
    if not _State.enabled:
        return nullcontext(INVALID_SPAN)
    return _started(name, kind=kind, attributes=attributes)


@contextmanager
def _started(
    name: str,
    *,
    kind: SpanKind,
    attributes: Attributes | None = None,
    context: Context | None = None,
) -> Iterator[Span]:
    """A current span for the block; an exception marks it failed by its type alone (its
    message, or a recorded traceback, could carry an address or a provider's reply)."""
    with _State.tracer.start_as_current_span(
        name,
        context=context,
        kind=kind,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as current:
        try:
            yield current
        except BaseException as exc:
            fail(current, exc)
            raise


def activated(current: Span) -> AbstractContextManager[Any]:
    """Make `current` the active span for the block, without ending it (nor recording what
    the block raises: the span's owner decides what its outcome was)."""
    if not _State.enabled:
        return nullcontext()
    return trace.use_span(
        current, end_on_exit=False, record_exception=False, set_status_on_exception=False
    )


def fail(current: Span, exc: BaseException) -> None:
    """Mark a span failed with the exception's type (its message may carry data)."""
    if current.is_recording():
        current.set_status(Status(StatusCode.ERROR, type(exc).__name__))


# --- AMQP ------------------------------------------------------------------------------------


_NO_HEADERS: Mapping[str, str] = MappingProxyType({})


def publish_span(
    exchange: str, routing_key: str, message_id: str | None
) -> AbstractContextManager[Mapping[str, str]]:
    """A producer span around one publish; yields the trace headers to put on the message
    (none while tracing is off)."""
    if not _State.enabled:
        return nullcontext(_NO_HEADERS)
    return _publishing(exchange, routing_key, message_id)


@contextmanager
def _publishing(
    exchange: str, routing_key: str, message_id: str | None
) -> Iterator[Mapping[str, str]]:
    attributes: dict[str, AttributeValue] = {
        "messaging.system": "rabbitmq",
        "messaging.operation.type": "send",
        "messaging.destination.name": exchange or routing_key,
        "messaging.rabbitmq.destination.routing_key": routing_key,
    }
    if message_id:
        attributes["messaging.message.id"] = message_id
    with _started(f"publish {routing_key}", kind=SpanKind.PRODUCER, attributes=attributes):
        headers: dict[str, str] = {}
        _PROPAGATOR.inject(headers)
        yield headers


def consume_span(queue: str, headers: Mapping[str, Any] | None, attributes: Attributes) -> Span:
    """A consumer span for one message, child of the publish span its headers name. Not made
    current and not ended: the caller activates it (`activated`) and ends it."""
    if not _State.enabled:
        return INVALID_SPAN
    carrier = {
        key: value.decode() if isinstance(value, bytes) else str(value)
        for key, value in (headers or {}).items()
        if key in ("traceparent", "tracestate")
    }
    return _State.tracer.start_span(
        f"process {queue}",
        context=_PROPAGATOR.extract(carrier),
        kind=SpanKind.CONSUMER,
        attributes={
            "messaging.system": "rabbitmq",
            "messaging.operation.type": "process",
            "messaging.destination.name": queue,
            **attributes,
        },
    )


# --- status writes ---------------------------------------------------------------------------


def status_write_spans(
    operation: str,
    parents: Sequence[tuple[Span, Attributes]] | None = None,
    *,
    attributes: Attributes | None = None,
) -> AbstractContextManager[None]:
    """One `notification_status.<operation>` span per notification of a batched statement.

    A claim or finish writes many notifications in one statement; each notification's trace
    gets its own span (child of that notification's span, with the statement's start and end),
    so every trace shows the write it waited for. `parents` None: one span (with
    `attributes`) under the current span. Nothing is recorded outside a trace.
    """
    if not _State.enabled:
        return nullcontext()
    if parents is None:
        parents = [(trace.get_current_span(), attributes or {})]
    return _statement(operation, [(p, a) for p, a in parents if p.get_span_context().is_valid])


@contextmanager
def _statement(operation: str, parents: Sequence[tuple[Span, Attributes]]) -> Iterator[None]:
    started = time.time_ns()
    error: BaseException | None = None
    try:
        yield
    except BaseException as exc:
        error = exc
        raise
    finally:
        ended = time.time_ns()
        for parent, own in parents:
            written = _State.tracer.start_span(
                f"notification_status.{operation}",
                context=trace.set_span_in_context(parent),
                kind=SpanKind.CLIENT,
                start_time=started,
                attributes={
                    "db.system.name": "postgresql",
                    "db.operation.name": operation,
                    "db.operation.batch.size": len(parents),
                    **own,
                },
            )
            if error is not None:
                fail(written, error)
            written.end(end_time=ended)


# --- HTTP ------------------------------------------------------------------------------------


class TracingMiddleware:
    """A server span per HTTP request (pure ASGI), continuing the caller's `traceparent`.

    Named `METHOD route-template` once routing has matched; the path itself (which may hold a
    user id) is never recorded. Health and metrics requests are not traced.
    """

    def __init__(self, app: ASGIApp, *, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            not _State.enabled
            or scope["type"] != "http"
            or scope["path"].startswith(_UNTRACED_PATHS)
        ):
            await self.app(scope, receive, send)
            return
        carrier = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in scope["headers"]
            if name in (b"traceparent", b"tracestate")
        }
        method = scope["method"]
        with _started(
            method,
            context=_PROPAGATOR.extract(carrier),
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method},
        ) as server:

            async def send_with_status(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                    server.set_attribute("http.response.status_code", status)
                    if status >= 500:
                        server.set_status(Status(StatusCode.ERROR))
                await send(message)

            try:
                await self.app(scope, receive, send_with_status)
            finally:
                route = getattr(scope.get("route"), "path", None)
                if route:
                    server.set_attribute("http.route", route)
                    server.update_name(f"{method} {route}")


def _client_attributes(method: str, host: str | None, port: int | None) -> Attributes:
    """A client span's attributes: method and server, never the path (it may hold a user id)."""
    return {"http.request.method": method, "server.address": host or "", "server.port": port or 0}


class TracedTransport(httpx.AsyncBaseTransport):
    """An httpx transport making each request a client span that carries `traceparent`
    (`shared.http_client` uses it while tracing is on)."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        with _started(
            request.method,
            kind=SpanKind.CLIENT,
            attributes=_client_attributes(request.method, url.host, url.port),
        ) as client:
            _PROPAGATOR.inject(request.headers)
            response = await self.inner.handle_async_request(request)
            client.set_attribute("http.response.status_code", response.status_code)
            if response.status_code >= 500:
                client.set_status(Status(StatusCode.ERROR))
            return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def aiohttp_trace_configs() -> list[aiohttp.TraceConfig]:
    """For an aiohttp session between our services: a client span per request, and its
    `traceparent` on the request. Empty while tracing is off (aiohttp then signals nothing)."""
    if not _State.enabled:
        return []
    config = aiohttp.TraceConfig()
    config.on_request_start.append(_aiohttp_start)
    config.on_request_end.append(_aiohttp_end)
    config.on_request_exception.append(_aiohttp_exception)
    return [config]


async def _aiohttp_start(
    _: aiohttp.ClientSession, context: SimpleNamespace, params: aiohttp.TraceRequestStartParams
) -> None:
    client = _State.tracer.start_span(
        params.method,
        kind=SpanKind.CLIENT,
        attributes=_client_attributes(params.method, params.url.host, params.url.port),
    )
    context.otel_span = client
    _PROPAGATOR.inject(params.headers, context=trace.set_span_in_context(client, Context()))


async def _aiohttp_end(
    _: aiohttp.ClientSession, context: SimpleNamespace, params: aiohttp.TraceRequestEndParams
) -> None:
    client: Span | None = getattr(context, "otel_span", None)
    if client is not None:
        client.set_attribute("http.response.status_code", params.response.status)
        if params.response.status >= 500:
            client.set_status(Status(StatusCode.ERROR))
        client.end()


async def _aiohttp_exception(
    _: aiohttp.ClientSession,
    context: SimpleNamespace,
    params: aiohttp.TraceRequestExceptionParams,
) -> None:
    client: Span | None = getattr(context, "otel_span", None)
    if client is not None:
        fail(client, params.exception)
        client.end()
