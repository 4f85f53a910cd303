"""Prometheus metrics shared by every service, and the `/metrics` text endpoint.

Metric objects live in the default registry at module level (the one allowed kind of module
state). Service-specific metrics are defined next to the code that updates them, with the
`notifications_` prefix.
"""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

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

metrics_router = APIRouter()


@metrics_router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
