"""Prometheus metrics shared by every service, and the `/metrics` text endpoint.

Metric objects live in the default registry at module level (the one allowed kind of module
state). Service-specific metrics are defined next to the code that updates them, with the
`notifications_` prefix.

`/metrics` tells an attacker what runs and how busy it is, so with `METRICS_BEARER_TOKEN` set
it needs `Authorization: Bearer <token>` (Prometheus: `authorization: {credentials: ...}`),
compared in constant time; in production it stays closed until the token is set. A bearer
token rather than a separate internal port: one listener per service, nothing more to expose
or route, and the same scrape config on every service.
"""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

from shared.errors import Unauthorized
from shared.settings import Settings, get_settings

HTTP_REQUESTS = Counter(
    "notifications_http_requests_total",
    "HTTP requests handled, by service, method, route template and status code.",
    ["service", "method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "notifications_http_request_duration_seconds",
    "HTTP request latency by service and route template.",
    ["service", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
MESSAGES_PUBLISHED = Counter(
    "notifications_messages_published_total",
    "Messages published to RabbitMQ with a broker confirm, by routing key.",
    ["routing_key"],
)
MESSAGES_CONSUMED = Counter(
    "notifications_messages_consumed_total",
    "Messages a worker finished with, by queue and outcome "
    "(delivered, retried, failed, duplicate, poison).",
    ["queue", "outcome"],
)
MESSAGE_HANDLING_SECONDS = Histogram(
    "notifications_message_handling_seconds",
    "Time a worker spent on one message, by queue.",
    ["queue"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
DEPENDENCY_FAILURES = Counter(
    "notifications_dependency_failures_total",
    "Calls to a dependency that failed, by service and dependency.",
    ["service", "dependency"],
)

# --- for the dashboards and the console's overview -------------------------------------------
DEAD_LETTERED = Counter(
    "notifications_dead_lettered_total",
    "Messages a worker sent to failed.queue, by queue and reason (permanent_failure, "
    "retry_budget_exhausted, poison, handler_error, unknown_notification).",
    ["queue", "reason"],
)
DEAD_LETTER_REASONS = (
    "permanent_failure",
    "retry_budget_exhausted",
    "poison",
    "handler_error",
    "unknown_notification",
)
DELIVERY_LATENCY = Histogram(
    "notifications_delivery_latency_seconds",
    "From acceptance (the message's created_at) to the recorded delivery, by channel; "
    "includes retries, and quiet hours for scheduled notifications.",
    ["channel"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600),
)
QUEUE_MESSAGES = Gauge(
    "notifications_queue_messages",
    "Messages in a RabbitMQ queue (ready, not yet acked excluded), sampled by the workers.",
    ["queue"],
)
QUEUE_CONSUMERS = Gauge(
    "notifications_queue_consumers",
    "Consumers subscribed to a RabbitMQ queue, sampled by the workers.",
    ["queue"],
)

metrics_router = APIRouter()


def check_metrics_access(settings: Settings, authorization: str | None) -> None:
    """Raise 401 unless this scrape may read the metrics (see the module docstring)."""
    token = settings.metrics_bearer_token
    if token is None:
        if settings.environment != "production":
            return
        raise Unauthorized(
            "metrics are closed: set METRICS_BEARER_TOKEN to scrape them",
            headers={"WWW-Authenticate": "Bearer"},
        )
    scheme, _, presented = (authorization or "").partition(" ")
    expected = token.get_secret_value().encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip().encode(), expected):
        raise Unauthorized(
            "metrics need the metrics bearer token", headers={"WWW-Authenticate": "Bearer"}
        )


@metrics_router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    # Every service keeps its settings on the app; a bare app (a stand-in) reads the process's.
    settings: Settings = getattr(request.app.state, "settings", None) or get_settings()
    check_metrics_access(settings, request.headers.get("authorization"))
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
