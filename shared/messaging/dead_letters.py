"""The dead-letter queue, seen from one worker: list, replay and purge its channel's messages.

`failed.queue` is shared by every channel, so each operation reads through it and touches only
this worker's messages. Reading is "hold, then hand back": `basic.get` without ack on a
private channel, keeping every message unacked until the scan ends, then `nack(requeue=True)`
for each one we keep. RabbitMQ puts requeued messages back at their original position, and
while we hold a message the next `get` returns the one after it, so a scan sees each message
once, in order, and loses none (if we crash, closing the channel requeues everything held).
A plain get + nack-requeue loop would instead see the head message again and again; a
republishing scan would reorder the queue and duplicate messages if it died halfway.

The price: while a scan runs (milliseconds per thousand messages) the held messages are
invisible to another scan, e.g. the other worker's list at the same instant. Scans are bounded
by `MAX_SCAN` messages.

Replay is ordered so that nothing is lost or sent twice: reopen the status (`failed` ->
`queued`, a new replay generation), publish attempt 1 to the work exchange and wait for the
broker's confirm, and only then ack the DLQ copy. A failed publish puts the status back to
`failed` and leaves the DLQ copy where it was.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection
from fastapi import APIRouter, Body, Path, Request
from prometheus_client import Counter
from pydantic import BaseModel, ValidationError

from shared.auth import InternalKey
from shared.envelope import ok
from shared.errors import DependencyUnavailable, NotFound, error_responses
from shared.messaging.message import Channel, NotificationMessage
from shared.messaging.publisher import Publisher, PublishError
from shared.messaging.topology import FAILED_QUEUE, WORK_QUEUES
from shared.notification_status import NotificationStatus, StatusStore
from shared.pagination import PaginationQuery, page_of

logger = logging.getLogger("shared.messaging.dead_letters")

MAX_SCAN = 10_000
"""The most messages one list, replay or purge reads from `failed.queue`."""

GET_TIMEOUT_SECONDS = 5.0

DLQ_REPLAYS = Counter(
    "notifications_dlq_replays_total",
    "Dead-lettered messages handled by the admin endpoints, by channel and outcome "
    "(replayed, skipped, purged).",
    ["channel", "outcome"],
)


def channel_of(incoming: AbstractIncomingMessage) -> Channel | None:
    """Which channel a dead letter belongs to, from our headers, the broker's, or the body."""
    headers = incoming.headers or {}
    candidates: list[Any] = [headers.get("x-original-routing-key")]
    deaths = headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        candidates.append(_queue_channel(deaths[0].get("queue")))
        keys = deaths[0].get("routing-keys")
        if isinstance(keys, list) and keys:
            candidates.append(keys[0])
    candidates.append(_queue_channel(headers.get("x-original-queue")))
    for value in candidates:
        if isinstance(value, bytes):
            value = value.decode(errors="replace")
        if isinstance(value, str) and value in Channel.__members__.values():
            return Channel(value)
    try:
        body = json.loads(incoming.body)
        return Channel(body["notification_type"])
    except (ValueError, KeyError, TypeError):
        return None


def _queue_channel(queue: Any) -> str | None:
    if isinstance(queue, bytes):
        queue = queue.decode(errors="replace")
    for channel, name in WORK_QUEUES.items():
        if queue == name:
            return channel.value
    return None


def describe(incoming: AbstractIncomingMessage) -> dict[str, Any]:
    """A dead letter as the admin API shows it: why it failed, and the message itself."""
    headers = incoming.headers or {}
    deaths = headers.get("x-death")
    first_death = deaths[0] if isinstance(deaths, list) and deaths else {}
    reason = headers.get("x-failure-reason") or (
        first_death.get("reason") if isinstance(first_death, dict) else None
    )
    try:
        payload: Any = json.loads(incoming.body)
    except ValueError:
        payload = incoming.body[:2000].decode(errors="replace")
    return {
        "message_id": incoming.message_id,
        "correlation_id": incoming.correlation_id or _text(headers.get("x-correlation-id")),
        "channel": (channel.value if (channel := channel_of(incoming)) else None),
        "reason": _text(reason),
        "error": _text(headers.get("x-failure-error")),
        "failed_by": _text(headers.get("x-failed-by")),
        "attempt": payload.get("attempt") if isinstance(payload, dict) else None,
        "dead_lettered_at": incoming.timestamp.isoformat() if incoming.timestamp else None,
        "replays": headers.get("x-replay-count", 0),
        "message": payload,
    }


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return None if value is None else str(value)


@dataclass
class ReplayReport:
    replayed: list[str]
    skipped: list[dict[str, str | None]]


class DeadLetters:
    """The admin operations on `failed.queue` for one worker's channel."""

    def __init__(
        self,
        *,
        connection: AbstractRobustConnection,
        publisher: Publisher,
        status_store: StatusStore,
        channel: Channel,
        service: str,
    ) -> None:
        self.connection = connection
        self.publisher = publisher
        self.status = status_store
        self.channel = channel
        self.service = service
        for outcome in ("replayed", "skipped", "purged"):
            DLQ_REPLAYS.labels(channel.value, outcome)  # zero series, so rate() sees them

    @asynccontextmanager
    async def _held(self) -> AsyncIterator[list[AbstractIncomingMessage]]:
        """Every message of `failed.queue` (up to `MAX_SCAN`), held unacked for the block.

        The block acks what it consumes; whatever is still held afterwards is requeued at its
        original position. Closing the private channel is the safety net for a crash.
        """
        amqp_channel = await self.connection.channel()
        held: list[AbstractIncomingMessage] = []
        try:
            queue = await amqp_channel.declare_queue(FAILED_QUEUE, passive=True)
            while len(held) < MAX_SCAN:
                incoming = await queue.get(no_ack=False, fail=False, timeout=GET_TIMEOUT_SECONDS)
                if incoming is None:
                    break
                held.append(incoming)
            yield held
            for incoming in held:
                if not incoming.processed:
                    await incoming.nack(requeue=True)
        finally:
            await amqp_channel.close()

    def _mine(self, held: list[AbstractIncomingMessage]) -> list[AbstractIncomingMessage]:
        return [m for m in held if channel_of(m) == self.channel]

    async def list(self, *, page: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        async with self._held() as held:
            mine = self._mine(held)
            start = (page - 1) * limit
            return [describe(m) for m in mine[start : start + limit]], len(mine)

    async def get(self, message_id: str) -> dict[str, Any]:
        async with self._held() as held:
            for incoming in self._mine(held):
                if incoming.message_id == message_id:
                    return describe(incoming)
        raise NotFound(
            f"no {self.channel} message {message_id} in {FAILED_QUEUE}",
            code="dead_letter_not_found",
        )

    async def purge(self) -> int:
        async with self._held() as held:
            mine = self._mine(held)
            for incoming in mine:
                await incoming.ack()
        if mine:
            DLQ_REPLAYS.labels(self.channel.value, "purged").inc(len(mine))
        logger.warning("purged %d %s messages from %s", len(mine), self.channel, FAILED_QUEUE)
        return len(mine)

    async def replay(self, message_id: str | None = None) -> ReplayReport:
        report = ReplayReport(replayed=[], skipped=[])
        async with self._held() as held:
            mine = self._mine(held)
            if message_id is not None:
                mine = [m for m in mine if m.message_id == message_id]
                if not mine:
                    raise NotFound(
                        f"no {self.channel} message {message_id} in {FAILED_QUEUE}",
                        code="dead_letter_not_found",
                    )
            for incoming in mine:
                skipped = await self._replay_one(incoming)
                if skipped is None:
                    report.replayed.append(str(incoming.message_id))
                else:
                    report.skipped.append({"message_id": incoming.message_id, "reason": skipped})
        return report

    async def _replay_one(self, incoming: AbstractIncomingMessage) -> str | None:
        """Replay one dead letter; None if it went back to work, else why it stayed."""
        try:
            message = NotificationMessage.from_bytes(incoming.body)
        except ValidationError:
            return self._skip(incoming, "unparseable")
        reopened = await self.status.reopen_failed(
            message.notification_id, detail=f"replayed from {FAILED_QUEUE} by {self.service}"
        )
        if not reopened.applied and reopened.status is not NotificationStatus.QUEUED:
            # Not failed (delivered, or someone else's replay is running): nothing to replay.
            # A `queued` row is a replay that crashed before its publish, so it goes again.
            return self._skip(incoming, f"status is {reopened.status or 'missing'}")
        previous = (incoming.headers or {}).get("x-replay-count", 0)
        headers = {
            "x-replay-count": (previous if isinstance(previous, int) else 0) + 1,
            "x-replayed-by": self.service,
        }
        try:
            await self.publisher.publish_notification(
                message.model_copy(update={"attempt": 1}), headers=headers
            )
        except PublishError as exc:
            await self.status.transition(
                message.notification_id,
                NotificationStatus.FAILED,
                allowed_from=frozenset({NotificationStatus.QUEUED}),
                error="replay could not be published",
                detail="replay could not be published",
            )
            DLQ_REPLAYS.labels(self.channel.value, "skipped").inc()
            raise DependencyUnavailable("the broker did not confirm the replay") from exc
        await incoming.ack()
        DLQ_REPLAYS.labels(self.channel.value, "replayed").inc()
        logger.info(
            "replayed notification %s from %s (replay %d)",
            message.notification_id,
            FAILED_QUEUE,
            headers["x-replay-count"],
        )
        return None

    def _skip(self, incoming: AbstractIncomingMessage, reason: str) -> str:
        DLQ_REPLAYS.labels(self.channel.value, "skipped").inc()
        logger.info("not replaying %s: %s", incoming.message_id, reason)
        return reason


class ReplayRequest(BaseModel):
    """Replay one message by its AMQP message id (the notification id), or all if omitted."""

    message_id: str | None = None


def _dead_letters(request: Request) -> DeadLetters:
    dead_letters: DeadLetters | None = getattr(request.app.state, "dead_letters", None)
    if dead_letters is None:
        raise DependencyUnavailable("the worker is not connected to the broker")
    return dead_letters


_WHY = {
    400: "malformed JSON (`invalid_json`)",
    401: "a valid `X-Internal-API-Key` is required (`invalid_internal_key`)",
    404: "no such message in the dead letters (`dead_letter_not_found`)",
    413: "body over the size limit (`payload_too_large`)",
    422: "invalid input (`validation_error`)",
    503: "the worker is not connected to the broker (`dependency_unavailable`)",
}


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return error_responses(_WHY, *codes)


def dead_letter_router() -> APIRouter:
    """`/admin/dlq` routes; the app keeps a `DeadLetters` on `app.state.dead_letters`."""
    router = APIRouter(prefix="/admin/dlq", tags=["admin"])

    @router.get(
        "",
        summary="List this channel's dead letters",
        responses=_errors(401, 422, 503),
    )
    async def list_dead_letters(
        request: Request,
        _: InternalKey,
        pagination: PaginationQuery,
    ) -> dict[str, Any]:
        items, total = await _dead_letters(request).list(
            page=pagination.page, limit=pagination.limit
        )
        return page_of(items, total, pagination, f"{total} dead letters")

    @router.get(
        "/{message_id}",
        summary="One of this channel's dead letters",
        responses=_errors(401, 404, 503),
    )
    async def get_dead_letter(
        request: Request,
        _: InternalKey,
        message_id: Annotated[str, Path(min_length=1, max_length=255)],
    ) -> dict[str, Any]:
        found = await _dead_letters(request).get(message_id)
        return ok(found, message="dead letter")

    @router.post(
        "/replay",
        summary="Replay one or all of this channel's dead letters",
        responses=_errors(400, 401, 404, 413, 422, 503),
    )
    async def replay_dead_letters(
        request: Request,
        _: InternalKey,
        body: Annotated[ReplayRequest | None, Body()] = None,
    ) -> dict[str, Any]:
        message_id = body.message_id if body is not None else None
        report = await _dead_letters(request).replay(message_id)
        return ok(
            {"replayed": report.replayed, "skipped": report.skipped},
            message=f"{len(report.replayed)} replayed, {len(report.skipped)} skipped",
        )

    @router.delete(
        "",
        summary="Purge this channel's dead letters",
        responses=_errors(401, 503),
    )
    async def purge_dead_letters(request: Request, _: InternalKey) -> dict[str, Any]:
        purged = await _dead_letters(request).purge()
        return ok({"purged": purged}, message=f"{purged} dead letters purged")

    return router
