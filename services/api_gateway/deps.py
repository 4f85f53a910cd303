"""What routes need, declared once as `Annotated` dependencies: each route takes only the
collaborators it uses (the send use case, the status store, the rate limits, the caller's API
key). The lifespan builds them once (`app.py`) and keeps them on `app.state.gateway`."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated

import asyncpg
from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from redis.asyncio import Redis

from services.api_gateway.api_keys import ApiKey, ApiKeyStore
from services.api_gateway.broadcasts import Broadcasts
from services.api_gateway.outbox import Outbox
from services.api_gateway.rate_limit import RateLimits
from services.api_gateway.send import SendService
from services.api_gateway.settings import GatewaySettings
from services.api_gateway.store import NotificationStore
from services.api_gateway.topic_store import TopicStore
from shared.errors import RateLimited, Unauthorized
from shared.messaging.publisher import Publisher
from shared.suppressions import SuppressionList

RATE_LIMIT_STATE = "rate_limit_headers"


@dataclass
class Gateway:
    """Everything the lifespan creates (what health checks and shutdown need too)."""

    settings: GatewaySettings
    pool: asyncpg.Pool
    redis: Redis
    publisher: Publisher
    api_keys: ApiKeyStore
    rate_limits: RateLimits
    store: NotificationStore
    outbox: Outbox
    send: SendService
    topics: TopicStore
    broadcasts: Broadcasts


def _gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


# The providers are async on purpose: FastAPI runs a sync dependency in a worker thread.
async def _send_service(request: Request) -> SendService:
    return _gateway(request).send


async def _store(request: Request) -> NotificationStore:
    return _gateway(request).store


async def _rate_limits(request: Request) -> RateLimits:
    return _gateway(request).rate_limits


async def _suppressions(request: Request) -> SuppressionList:
    return SuppressionList(_gateway(request).pool)


async def _topics(request: Request) -> TopicStore:
    return _gateway(request).topics


async def _broadcasts(request: Request) -> Broadcasts:
    return _gateway(request).broadcasts


TopicsDep = Annotated[TopicStore, Depends(_topics)]
BroadcastsDep = Annotated[Broadcasts, Depends(_broadcasts)]
SendServiceDep = Annotated[SendService, Depends(_send_service)]
SuppressionsDep = Annotated[SuppressionList, Depends(_suppressions)]
StoreDep = Annotated[NotificationStore, Depends(_store)]
RateLimitsDep = Annotated[RateLimits, Depends(_rate_limits)]

_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <API key>`")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="or `X-API-Key: <key>`")


async def current_api_key(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    header_key: Annotated[str | None, Depends(_header)],
) -> ApiKey:
    raw = bearer.credentials if bearer is not None else header_key
    if raw and len(raw) <= 512:
        key = await _gateway(request).api_keys.verify(raw)
        if key is not None:
            return key
    raise Unauthorized(
        "a valid API key is required (Authorization: Bearer <key> or X-API-Key)",
        code="invalid_api_key",
        headers={"WWW-Authenticate": "Bearer"},
    )


CurrentApiKey = Annotated[ApiKey, Depends(current_api_key)]


async def enforce_rate_limit(
    request: Request,
    limits: RateLimits,
    api_key: ApiKey,
    *,
    scope: str,
    user_id: uuid.UUID | None,
) -> None:
    """Check the caller's buckets; the headers go on whatever response follows (see
    `RateLimitHeadersMiddleware`), a refusal is 429 `rate_limited` with `Retry-After`."""
    decision = await limits.check(api_key, scope=scope, user_id=user_id)
    headers = decision.headers()
    request.state.rate_limit_headers = headers
    if not decision.allowed:
        raise RateLimited(
            f"rate limit exceeded for this {decision.refused_by or 'client'}; "
            f"retry in {decision.retry_after_seconds} s",
            headers={"Retry-After": headers["Retry-After"]},
        )
