"""The one factory for outgoing HTTP clients: every client has timeouts and bounded pools, and
carries the caller's trace context (`traceparent`) while tracing is on."""

from __future__ import annotations

import httpx

from shared.settings import Settings
from shared.tracing import TracedTransport, enabled


def create_http_client(
    settings: Settings,
    *,
    base_url: str = "",
    headers: dict[str, str] | None = None,
    timeout_seconds: float | None = None,
    max_connections: int = 100,
) -> httpx.AsyncClient:
    timeout = timeout_seconds if timeout_seconds is not None else settings.http_timeout_seconds
    limits = httpx.Limits(
        max_connections=max_connections, max_keepalive_connections=max_connections
    )
    return httpx.AsyncClient(
        base_url=base_url,
        headers=headers,
        timeout=httpx.Timeout(timeout, connect=min(timeout, 2.0)),
        limits=limits,
        # While tracing is on, each request is a client span carrying `traceparent`.
        transport=TracedTransport(httpx.AsyncHTTPTransport(limits=limits)) if enabled() else None,
    )


def internal_headers(settings: Settings) -> dict[str, str]:
    return {"X-Internal-API-Key": settings.internal_api_key.get_secret_value()}
