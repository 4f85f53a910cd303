"""Topic sends: a 202 with a broadcast id at once, the fan-out afterwards, in chunks.

`POST /v1/topics/{key}/send` checks the body and the template once, then writes one
`broadcasts` row (with its idempotency record, in one statement) and answers. The fan-out is a
task of every gateway: it leases one broadcast, takes the next `broadcast_chunk_size`
subscribers after its cursor, sends each through the ordinary send use case (so preferences,
quiet hours, the outbox and every guarantee of a plain send hold), then moves the cursor and
lets the lease go. Each subscriber's send has the idempotency key `broadcast:<id>:<user>`, so a
chunk redone after a crash (the lease lapses, another gateway takes it) sends nobody twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
from prometheus_client import Counter

from services.api_gateway.api_keys import ApiKey
from services.api_gateway.clients import TemplateLookup
from services.api_gateway.idempotency import Claim, IdempotencyStore, Replay
from services.api_gateway.schemas import TopicSendRequest
from services.api_gateway.send import SendService, check_variables
from services.api_gateway.settings import GatewaySettings
from services.api_gateway.topic_store import Lease, TopicStore
from shared.db import DB_UNAVAILABLE
from shared.envelope import ok
from shared.errors import AppError, Conflict, DependencyUnavailable

logger = logging.getLogger("api_gateway.broadcasts")

FANNED_OUT = Counter(
    "notifications_gateway_broadcast_sends_total",
    "Subscribers a topic's fan-out reached, by outcome (accepted, not_sent).",
    ["outcome"],
)

LEASE_SECONDS = 60.0
"""How long one chunk may take before another gateway may take the broadcast over."""
SEND_CONCURRENCY = 16


class StopChunk(Exception):
    """A dependency is down or a send is still in progress elsewhere: redo the chunk later."""


class Broadcasts:
    def __init__(
        self,
        settings: GatewaySettings,
        *,
        topics: TopicStore,
        idempotency: IdempotencyStore,
        templates: TemplateLookup,
        sends: SendService,
    ) -> None:
        self.settings = settings
        self.topics = topics
        self.idempotency = idempotency
        self.templates = templates
        self.sends = sends
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # --- the request ----------------------------------------------------------------------

    async def create(
        self,
        api_key: ApiKey,
        key: str,
        body: TopicSendRequest,
        *,
        idempotency_key: str | None,
        fingerprint: str,
    ) -> tuple[dict[str, Any], bool]:
        """The 202's body (and whether it is a replay); the fan-out starts right after."""
        claim: Claim | None = None
        idem = idempotency_key or body.request_id
        if idem is not None:
            outcome = await self.idempotency.claim(api_key.id, idem, fingerprint)
            if isinstance(outcome, Replay):
                return outcome.body, True
            claim = outcome
        try:
            answer = await self._create(api_key, key, body, claim)
        except BaseException:
            if claim is not None:
                with contextlib.suppress(Exception):
                    await self.idempotency.release(claim)
            raise
        self._wake.set()
        return answer, False

    async def _create(
        self, api_key: ApiKey, key: str, body: TopicSendRequest, claim: Claim | None
    ) -> dict[str, Any]:
        template = await self.templates.active(
            body.template_code, body.notification_type.value, body.locale
        )
        check_variables(template, body.variables)
        broadcast_id = uuid.uuid4()
        answer = ok(
            {"broadcast_id": str(broadcast_id), "topic": key, "total": None, "created_at": None},
            message="broadcast accepted; the fan-out has started",
        )
        total, created_at = await self.topics.create_broadcast(
            api_key.id,
            key,
            broadcast_id,
            body.model_dump(mode="json"),
            (answer, claim.key, claim.token) if claim else None,
        )
        answer["data"].update(total=total, created_at=created_at)
        return answer

    # --- the fan-out ----------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="broadcast-fan-out")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while True:
            try:
                busy = await self.run_once()
            except asyncio.CancelledError:
                raise
            except (StopChunk, *DB_UNAVAILABLE, asyncpg.PostgresError) as exc:
                logger.warning("broadcast fan-out paused: %s", exc or type(exc).__name__)
                busy = False
            if not busy:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._wake.wait(), self.settings.outbox_poll_interval_seconds
                    )
                self._wake.clear()

    async def run_once(self) -> bool:
        """One chunk of one broadcast; False when none is waiting."""
        lease = await self.topics.lease(LEASE_SECONDS)
        if lease is None:
            return False
        users = await self.topics.chunk(lease, self.settings.broadcast_chunk_size)
        if not users:
            await self.topics.done(lease.broadcast_id)
            return True
        try:
            outcomes = await self._send_chunk(lease, users)
        except BaseException:
            await self.topics.let_go(lease.broadcast_id)
            raise
        not_sent = outcomes.count(False)
        await self.topics.advance(lease.broadcast_id, users[-1], len(users), not_sent)
        FANNED_OUT.labels("accepted").inc(len(users) - not_sent)
        FANNED_OUT.labels("not_sent").inc(not_sent)
        return True

    async def _send_chunk(self, lease: Lease, users: list[uuid.UUID]) -> list[bool]:
        request = TopicSendRequest.model_validate(lease.request)
        api_key = ApiKey(id=lease.api_key_id, name="broadcast", rate_limit_per_minute=None)
        limit = asyncio.Semaphore(SEND_CONCURRENCY)
        now = datetime.now(UTC)

        async def one(user_id: uuid.UUID) -> bool:
            key = f"broadcast:{lease.broadcast_id}:{user_id}"
            async with limit:
                try:
                    await self.sends.send(
                        api_key,
                        request.for_user(user_id, lease.broadcast_id, now),
                        idempotency_key=key,
                        fingerprint=hashlib.sha256(key.encode()).hexdigest(),
                    )
                except (DependencyUnavailable, Conflict) as exc:
                    raise StopChunk(exc.message) from exc
                except AppError as exc:  # this subscriber cannot be sent to (a deleted user)
                    logger.info("broadcast %s: %s not sent: %s", lease.broadcast_id, user_id, exc)
                    return False
            return True

        # Every send of the chunk finishes (none is cut off mid-accept) before one that could
        # not go stops the chunk; the chunk is then redone, and the finished ones replay.
        results = await asyncio.gather(*(one(u) for u in users), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return [bool(r) for r in results]
