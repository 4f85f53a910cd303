"""What routes need, declared once: the wired gateway, the caller's API key, rate limits."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated

import asyncpg
from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from services.api_gateway.api_keys import ApiKey, ApiKeyStore
from services.api_gateway.outbox import Outbox
from services.api_gateway.rate_limit import Bucket, RateLimiter
from services.api_gateway.send import SendService
from services.api_gateway.settings import GatewaySettings
from services.api_gateway.store import NotificationStore
from shared.errors import RateLimited, Unauthorized
from shared.messaging.publisher import Publisher
from shared.redis import RedisKeys

RATE_LIMIT_STATE = "rate_limit_headers"


@dataclass
class Gateway:
    """Everything the lifespan creates, kept on `app.state.gateway`."""

    settings: GatewaySettings
    pool: asyncpg.Pool
    engine: AsyncEngine
    redis: Redis
    keys: RedisKeys
    publisher: Publisher
    api_keys: ApiKeyStore
    limiter: RateLimiter
    store: NotificationStore
    outbox: Outbox
    send: SendService


async def get_gateway(request: Request) -> Gateway:
    # async on purpose: FastAPI runs a sync dependency in a worker thread.
    gateway: Gateway = request.app.state.gateway
    return gateway


GatewayDep = Annotated[Gateway, Depends(get_gateway)]

_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <API key>`")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="or `X-API-Key: <key>`")


async def current_api_key(
    gateway: GatewayDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    header_key: Annotated[str | None, Depends(_header)],
) -> ApiKey:
    raw = bearer.credentials if bearer is not None else header_key
    if raw and len(raw) <= 512:
        key = await gateway.api_keys.verify(raw)
        if key is not None:
            return key
    raise Unauthorized(
        "a valid API key is required (Authorization: Bearer <key> or X-API-Key)",
        code="invalid_api_key",
        headers={"WWW-Authenticate": "Bearer"},
    )


CurrentApiKey = Annotated[ApiKey, Depends(current_api_key)]


async def enforce_rate_limit(
    request: Request, gateway: Gateway, api_key: ApiKey, *, scope: str, user_id: uuid.UUID | None
) -> None:
    """Check the caller's buckets; the headers go on whatever response follows (see
    `RateLimitHeadersMiddleware`), a refusal is 429 `rate_limited` with `Retry-After`."""
    settings = gateway.settings
    period = settings.gateway_rate_limit_period_seconds
    buckets = [
        Bucket(
            "api_key",
            gateway.keys("gw", "rl", scope, "key", api_key.id),
            api_key.rate_limit_per_minute * period // 60
            if api_key.rate_limit_per_minute
            else settings.gateway_rate_limit_per_key,
            period,
        )
    ]
    if user_id is not None:
        buckets.append(
            Bucket(
                "user",
                gateway.keys("gw", "rl", scope, "user", user_id),
                settings.gateway_rate_limit_per_user,
                period,
            )
        )
    decision = await gateway.limiter.check(buckets)
    headers = decision.headers()
    request.state.rate_limit_headers = headers
    if not decision.allowed:
        raise RateLimited(
            f"rate limit exceeded for this {decision.refused_by or 'client'}; "
            f"retry in {decision.retry_after_seconds} s",
            headers={"Retry-After": headers["Retry-After"]},
        )
