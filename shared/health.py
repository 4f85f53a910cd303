"""Health endpoints that test their dependencies.

A check is an async callable that raises when its dependency is down. The body lists every
dependency as `up` or `down`; any `down` makes the status 503, so a load balancer or Kubernetes
probe sees the truth.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from shared.envelope import ok

HealthCheck = Callable[[], Awaitable[object]]

logger = logging.getLogger("shared.health")


async def run_checks(checks: Mapping[str, HealthCheck], timeout: float = 2.0) -> dict[str, str]:
    async def one(name: str, check: HealthCheck) -> tuple[str, str]:
        try:
            await asyncio.wait_for(check(), timeout)
            return name, "up"
        except Exception as exc:  # a health check reports any failure as "down"
            logger.warning("health check %s failed: %s", name, type(exc).__name__)
            return name, "down"

    results = await asyncio.gather(*(one(n, c) for n, c in checks.items()))
    return dict(results)


def health_router(
    service: str,
    checks: Callable[[], Mapping[str, HealthCheck]],
    paths: tuple[str, ...] = ("/health",),
) -> APIRouter:
    """A router answering health at each of `paths`. `checks` is read per request, so it can
    reach objects created in the lifespan (via `app.state`)."""
    router = APIRouter(tags=["health"])

    async def health() -> JSONResponse:
        results = await run_checks(checks())
        healthy = all(v == "up" for v in results.values())
        body = ok(
            {"service": service, "status": "ok" if healthy else "degraded", "checks": results},
            message="healthy" if healthy else "a dependency is down",
        )
        if not healthy:
            body["success"] = False
            body["error"] = "dependency_unavailable"
        return JSONResponse(body, status_code=200 if healthy else 503)

    for path in paths:
        router.add_api_route(path, health, methods=["GET"], summary=f"{service} health")
    return router
