"""The dead-letter queue as the gateway sees it: a client of the workers' `/admin/dlq` API.

Each worker owns its channel's share of `failed.queue` and the replay rules
(`shared/messaging/dead_letters.py`); the gateway only forwards, with the internal key, and
turns the worker's answer into the operator API's shape. A worker that is down or unreachable
is a 503 `dependency_unavailable`, never a 500.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import BaseModel, Field

from shared.envelope import PageMeta
from shared.errors import AppError, DependencyUnavailable
from shared.http_client import create_http_client, internal_headers
from shared.messaging.message import Channel
from shared.settings import Settings

logger = logging.getLogger("api_gateway.console.dead_letters")

# A replay of everything reads the whole of failed.queue and publishes with confirms.
WORKER_TIMEOUT_SECONDS = 60.0


class DeadLetter(BaseModel):
    """One dead-lettered message, as the operator API lists it."""

    message_id: str | None = Field(description="The AMQP message id (the notification id).")
    notification_id: str | None
    channel: Channel | None
    reason: str | None = Field(
        description="Why it was dead-lettered: `permanent_failure`, `retry_budget_exhausted`, "
        "`poison`, `handler_error`, `unknown_notification` (or the broker's reason)."
    )
    error: str | None = Field(description="The last error, as the worker recorded it.")
    failed_by: str | None = Field(description="The service that dead-lettered it.")
    attempt: int | None = Field(description="The attempt that failed last.")
    failed_at: datetime | None = Field(description="When it reached `failed.queue`.")
    replays: int = Field(description="How often it has been replayed before.")
    correlation_id: str | None


class DeadLetterDetail(DeadLetter):
    message: dict[str, Any] | str | None = Field(
        description="The message as dead-lettered (JSON), or its first 2,000 characters."
    )


class SkippedReplay(BaseModel):
    message_id: str | None
    reason: str


class ReplayReport(BaseModel):
    channel: Channel
    replayed: list[str] = Field(description="Message ids put back to work (attempt 1).")
    skipped: list[SkippedReplay] = Field(
        description="Messages left where they were, with why (e.g. already delivered)."
    )


class PurgeReport(BaseModel):
    channel: Channel
    purged: int


def _int(value: Any, default: int | None = None) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def dead_letter_view(item: dict[str, Any], *, detail: bool) -> dict[str, Any]:
    """The worker's description of a dead letter in the operator API's field names."""
    message = item.get("message")
    notification_id = message.get("notification_id") if isinstance(message, dict) else None
    view: dict[str, Any] = {
        "message_id": item.get("message_id"),
        "notification_id": notification_id or item.get("message_id"),
        "channel": item.get("channel"),
        "reason": item.get("reason"),
        "error": item.get("error"),
        "failed_by": item.get("failed_by"),
        "attempt": _int(item.get("attempt")),
        "failed_at": item.get("dead_lettered_at"),
        "replays": _int(item.get("replays"), 0),
        "correlation_id": item.get("correlation_id"),
    }
    if detail:
        view["message"] = message
    return view


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    meta: PageMeta


class DeadLetterClient:
    """Forwards to the worker of each channel (`EMAIL_SERVICE_URL`, `PUSH_SERVICE_URL`)."""

    def __init__(self, settings: Settings) -> None:
        urls = {Channel.EMAIL: settings.email_service_url, Channel.PUSH: settings.push_service_url}
        self._http = {
            channel: create_http_client(
                settings,
                base_url=url,
                headers=internal_headers(settings),
                timeout_seconds=WORKER_TIMEOUT_SECONDS,
                max_connections=4,
            )
            for channel, url in urls.items()
        }

    async def aclose(self) -> None:
        for client in self._http.values():
            await client.aclose()

    async def list(self, channel: Channel, *, page: int, limit: int) -> Page:
        body = await self._call(channel, "GET", "/admin/dlq", params={"page": page, "limit": limit})
        meta = body.get("meta") or {}
        items = [dead_letter_view(i, detail=False) for i in body.get("data") or []]
        total = _int(meta.get("total"), len(items)) or 0
        return Page(items=items, meta=PageMeta.build(total=total, page=page, limit=limit))

    async def get(self, channel: Channel, message_id: str) -> dict[str, Any]:
        body = await self._call(channel, "GET", f"/admin/dlq/{quote(message_id, safe='')}")
        return dead_letter_view(body.get("data") or {}, detail=True)

    async def replay(self, channel: Channel, message_id: str | None) -> dict[str, Any]:
        payload = {"message_id": message_id} if message_id is not None else None
        body = await self._call(channel, "POST", "/admin/dlq/replay", json=payload)
        data = body.get("data") or {}
        return {
            "channel": channel.value,
            "replayed": list(data.get("replayed") or []),
            "skipped": list(data.get("skipped") or []),
        }

    async def purge(self, channel: Channel) -> dict[str, Any]:
        body = await self._call(channel, "DELETE", "/admin/dlq")
        return {"channel": channel.value, "purged": _int((body.get("data") or {}).get("purged"), 0)}

    async def _call(
        self,
        channel: Channel,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
    ) -> dict[str, Any]:
        try:
            response = await self._http[channel].request(method, path, params=params, json=json)
        except httpx.HTTPError as exc:
            logger.warning("%s worker unreachable: %s", channel, type(exc).__name__)
            raise DependencyUnavailable(
                f"the {channel} worker is unreachable", headers={"Retry-After": "5"}
            ) from exc
        try:
            body: dict[str, Any] = response.json()
        except ValueError:
            body = {}
        if response.status_code == 200:
            return body
        if response.status_code in (404, 422):
            # The worker's own answer (`dead_letter_not_found`, a bad id): the caller's error.
            raise AppError(
                str(body.get("message") or "not found"),
                code=str(body.get("error") or "not_found"),
                status_code=response.status_code,
            )
        logger.warning(
            "%s worker answered %s on %s %s", channel, response.status_code, method, path
        )
        raise DependencyUnavailable(
            f"the {channel} worker could not do this ({body.get('message') or response.status_code})",
            headers={"Retry-After": "5"},
        )
