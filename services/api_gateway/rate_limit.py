"""Rate limits: GCRA in one Lua script, per API key and per user, in one Redis round trip.

GCRA keeps one number per bucket (the "theoretical arrival time"), so a bucket costs one key
and the decision is exact with no window edges. A bucket allows `limit` requests per `period`
with bursts up to `limit`. All buckets of a request are checked and updated atomically: a
refused request consumes nothing, so a busy client is never locked out by its own retries.

If Redis is unreachable the limiter fails open: the request goes through, the failure is
logged and counted (`notifications_gateway_rate_limit_fail_open_total`), and a breaker stops
us from waiting on a dead Redis for every request.
"""

from __future__ import annotations

import logging
import math
import uuid
from dataclasses import dataclass

from prometheus_client import Counter
from redis.asyncio import Redis
from redis.exceptions import RedisError

from services.api_gateway.api_keys import ApiKey
from services.api_gateway.breaker import BreakerOpen, CircuitBreaker
from services.api_gateway.settings import GatewaySettings
from shared.redis import RedisKeys

logger = logging.getLogger("api_gateway.rate_limit")

RATE_LIMIT_FAIL_OPEN = Counter(
    "notifications_gateway_rate_limit_fail_open_total",
    "Requests let through without a rate-limit decision because Redis was unavailable.",
)
RATE_LIMITED = Counter(
    "notifications_gateway_rate_limited_total",
    "Requests refused with 429, by the bucket that refused them.",
    ["bucket"],
)

# KEYS: one per bucket. ARGV: limit_1, period_ms_1, limit_2, period_ms_2, ...
# Returns {allowed, limit, remaining, reset_ms, retry_after_ms, refusing_bucket_index}; the
# limit/remaining/reset reported are those of the tightest bucket.
GCRA_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local allowed = 1
local retry_after = 0
local refused_by = 0
local report_limit, report_remaining, report_reset = 0, -1, 0
local new_tats = {}
for i = 1, #KEYS do
  local limit = tonumber(ARGV[2 * i - 1])
  local period = tonumber(ARGV[2 * i])
  local interval = period / limit
  local tat = tonumber(redis.call('GET', KEYS[i]) or now)
  if tat < now then tat = now end
  local new_tat = tat + interval
  local allow_at = new_tat - period
  local remaining, reset
  if now < allow_at then
    allowed = 0
    if allow_at - now > retry_after then
      retry_after = allow_at - now
      refused_by = i
    end
    remaining = 0
    reset = tat - now
  else
    new_tats[i] = new_tat
    remaining = math.floor((period - (new_tat - now)) / interval)
    reset = new_tat - now
  end
  if report_remaining < 0 or remaining < report_remaining then
    report_limit, report_remaining, report_reset = limit, remaining, reset
  end
end
if allowed == 1 then
  for i = 1, #KEYS do
    redis.call('SET', KEYS[i], string.format('%.3f', new_tats[i]),
               'PX', math.max(1, math.ceil(new_tats[i] - now)))
  end
end
return {allowed, report_limit, report_remaining, math.ceil(report_reset),
        math.ceil(retry_after), refused_by}
"""


@dataclass(frozen=True)
class Bucket:
    name: str
    key: str
    limit: int
    period_seconds: int


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    limit: int
    remaining: int
    reset_seconds: int
    retry_after_seconds: int
    refused_by: str | None = None
    fail_open: bool = False

    def headers(self) -> dict[str, str]:
        headers = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_seconds),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after_seconds)
        return headers


def _seconds(ms: int) -> int:
    return max(0, math.ceil(ms / 1000))


class RateLimiter:
    def __init__(self, redis: Redis, breaker: CircuitBreaker) -> None:
        self._script = redis.register_script(GCRA_LUA)
        self._breaker = breaker

    async def check(self, buckets: list[Bucket]) -> RateDecision:
        args: list[int] = []
        for bucket in buckets:
            args += [max(1, bucket.limit), bucket.period_seconds * 1000]
        try:
            self._breaker.before_call()
        except BreakerOpen:
            return self._fail_open(buckets, None)
        try:
            raw = await self._script(keys=[b.key for b in buckets], args=args)
        except (RedisError, OSError) as exc:
            self._breaker.record_failure()
            return self._fail_open(buckets, type(exc).__name__)
        self._breaker.record_success()
        allowed, limit, remaining, reset_ms, retry_ms, refused_index = (int(v) for v in raw)
        refused_by = buckets[refused_index - 1].name if refused_index else None
        if not allowed:
            RATE_LIMITED.labels(refused_by or "unknown").inc()
        return RateDecision(
            allowed=bool(allowed),
            limit=limit,
            remaining=max(0, remaining),
            reset_seconds=_seconds(reset_ms),
            retry_after_seconds=max(1, _seconds(retry_ms)),
            refused_by=refused_by,
        )

    @staticmethod
    def _fail_open(buckets: list[Bucket], reason: str | None) -> RateDecision:
        RATE_LIMIT_FAIL_OPEN.inc()
        if reason is not None:  # while the breaker is open the failure was already logged
            logger.warning("rate limit skipped (redis unavailable: %s); failing open", reason)
        limit = min(b.limit for b in buckets)
        return RateDecision(
            allowed=True,
            limit=limit,
            remaining=limit,
            reset_seconds=0,
            retry_after_seconds=0,
            fail_open=True,
        )


class RateLimits:
    """The gateway's buckets for a caller: one per API key (its own limit, else the default)
    and, on sends, one per user. Reads and sends count in separate buckets (`scope`)."""

    def __init__(self, limiter: RateLimiter, keys: RedisKeys, settings: GatewaySettings) -> None:
        self.limiter = limiter
        self.keys = keys
        self.settings = settings

    async def check(
        self, api_key: ApiKey, *, scope: str, user_id: uuid.UUID | None
    ) -> RateDecision:
        period = self.settings.gateway_rate_limit_period_seconds
        per_key = (
            api_key.rate_limit_per_minute * period // 60
            if api_key.rate_limit_per_minute
            else self.settings.gateway_rate_limit_per_key
        )
        buckets = [
            Bucket("api_key", self.keys("gw", "rl", scope, "key", api_key.id), per_key, period)
        ]
        if user_id is not None:
            buckets.append(
                Bucket(
                    "user",
                    self.keys("gw", "rl", scope, "user", user_id),
                    self.settings.gateway_rate_limit_per_user,
                    period,
                )
            )
        return await self.limiter.check(buckets)
