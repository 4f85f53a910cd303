"""Status transitions are monotonic and recorded once; a worker's claim is exclusive and its
writes fenced (shared/notification_status.py)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db import create_asyncpg_pool, create_engine
from shared.notification_status import (
    Claim,
    ClaimOutcome,
    DeviceResult,
    DeviceStatus,
    Finish,
    StatusStore,
    notification_status_history,
    notification_statuses,
)
from shared.notification_status import (
    NotificationStatus as S,
)
from shared.settings import Settings


@pytest.fixture
async def engine(base_settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(base_settings, application_name="test")
    yield engine
    await engine.dispose()


@pytest.fixture
async def store(base_settings: Settings) -> AsyncIterator[StatusStore]:
    pool = await create_asyncpg_pool(base_settings, application_name="test")
    yield StatusStore(pool)
    await pool.close()


async def _new_row(engine: AsyncEngine, *, expires_in_seconds: float | None = None) -> uuid.UUID:
    notification_id = uuid.uuid4()
    async with engine.begin() as conn:
        await conn.execute(
            insert(notification_statuses).values(
                id=notification_id,
                notification_type="email",
                user_id=uuid.uuid4(),
                template_code="welcome",
                status=S.QUEUED.value,
                expires_at=(
                    func.now() + timedelta(seconds=expires_in_seconds)
                    if expires_in_seconds is not None
                    else None
                ),
            )
        )
    return notification_id


async def _history(engine: AsyncEngine, notification_id: uuid.UUID) -> list[tuple[str, int]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(notification_status_history.c.status, notification_status_history.c.attempt)
            .where(notification_status_history.c.notification_id == notification_id)
            .order_by(notification_status_history.c.id)
        )
        return [(r[0], r[1]) for r in rows]


LEASE = 30.0
LIMIT = 3


async def _claim(store: StatusStore, nid: uuid.UUID, attempt: int, lease: float = LEASE) -> Claim:
    claims = await store.claim([(nid, attempt)], lease_seconds=lease, max_claims=LIMIT)
    return claims[nid]


def _done(claim: Claim, status: S, **extra: object) -> Finish:
    assert claim.token is not None
    return Finish(claim.notification_id, claim.token, status, **extra)  # type: ignore[arg-type]


async def test_a_claim_is_exclusive_while_its_lease_holds(
    engine: AsyncEngine, store: StatusStore
) -> None:
    nid = await _new_row(engine)
    first = await _claim(store, nid, 1)
    assert first.outcome is ClaimOutcome.CLAIMED and first.token is not None
    # A second copy of the same message: not eligible while the first holds the lease.
    second = await _claim(store, nid, 1)
    assert second.outcome is ClaimOutcome.LOST and second.status is S.PROCESSING
    assert (await store.finish([_done(first, S.DELIVERED, provider_id="m-1")])) == {nid}
    assert (await _claim(store, nid, 2)).outcome is ClaimOutcome.LOST
    assert await store.current(nid) is S.DELIVERED


async def test_concurrent_copies_of_one_message_yield_exactly_one_claim(
    engine: AsyncEngine, store: StatusStore
) -> None:
    nid = await _new_row(engine)
    claims = await asyncio.gather(*(_claim(store, nid, 1) for _ in range(20)))
    assert sum(c.outcome is ClaimOutcome.CLAIMED for c in claims) == 1


async def test_writes_are_fenced_by_the_claim_token(
    engine: AsyncEngine, store: StatusStore
) -> None:
    nid = await _new_row(engine)
    claim = await _claim(store, nid, 1)
    forged = Finish(nid, uuid.uuid4(), S.DELIVERED)
    assert await store.finish([forged]) == set()
    results = [DeviceResult("tok", DeviceStatus.ACCEPTED, "m-1")]
    await store.record_device_results(nid, uuid.uuid4(), results)
    assert await store.device_results(nid) == {}
    assert claim.token is not None
    await store.record_device_results(nid, claim.token, results)
    assert (await store.device_results(nid))["tok"].status is DeviceStatus.ACCEPTED


async def test_a_lapsed_lease_is_taken_over_and_the_old_holder_cannot_record(
    engine: AsyncEngine, store: StatusStore
) -> None:
    nid = await _new_row(engine)
    stalled = await _claim(store, nid, 1, lease=0.0)
    taker = await _claim(store, nid, 1)
    assert taker.outcome is ClaimOutcome.CLAIMED and taker.token != stalled.token
    assert await store.finish([_done(stalled, S.DELIVERED)]) == set()
    assert await store.finish([_done(taker, S.DELIVERED)]) == {nid}


async def test_an_older_attempt_is_refused_once_a_newer_one_ran(
    engine: AsyncEngine, store: StatusStore
) -> None:
    nid = await _new_row(engine)
    first = await _claim(store, nid, 1)
    await store.finish([_done(first, S.RETRYING, retry_in_ms=1000)])
    # A stale copy of attempt 1 must not run beside the scheduled attempt 2.
    assert (await _claim(store, nid, 1)).outcome is ClaimOutcome.LOST
    assert (await _claim(store, nid, 2)).outcome is ClaimOutcome.CLAIMED


async def test_retrying_records_when_the_next_attempt_is_due_on_the_database_clock(
    engine: AsyncEngine, store: StatusStore
) -> None:
    nid = await _new_row(engine)
    claim = await _claim(store, nid, 1)
    await store.finish([_done(claim, S.RETRYING, retry_in_ms=60_000, error="421 later")])
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT status, next_attempt_at - updated_at AS wait, claim_token"
                    " FROM api_gateway.notification_statuses WHERE id = :id"
                ),
                {"id": nid},
            )
        ).one()
    assert row.status == "retrying" and row.claim_token is None
    assert 59 <= row.wait.total_seconds() <= 61


async def test_claims_without_an_outcome_end_in_handler_error(
    engine: AsyncEngine, store: StatusStore
) -> None:
    """A message that kills its worker: each redelivery claims the same attempt again."""
    nid = await _new_row(engine)
    for _ in range(LIMIT):
        claim = await _claim(store, nid, 1, lease=0.0)
        assert claim.outcome is ClaimOutcome.CLAIMED
    poison = await _claim(store, nid, 1)
    assert poison.outcome is ClaimOutcome.POISON and poison.status is S.FAILED
    async with engine.connect() as conn:
        reason = (
            await conn.execute(
                text("SELECT status_reason FROM api_gateway.notification_statuses WHERE id = :id"),
                {"id": nid},
            )
        ).scalar()
    assert reason == "handler_error"
    # Replay reopens it like any failed notification.
    assert (await store.reopen_failed(nid, "replayed")).applied
    assert (await _claim(store, nid, 1)).outcome is ClaimOutcome.CLAIMED


async def test_a_released_claim_is_taken_again_at_once_and_counts_only_handler_errors(
    engine: AsyncEngine, store: StatusStore
) -> None:
    nid = await _new_row(engine)
    for _ in range(LIMIT + 2):  # outages (not handler errors) never reach the limit
        claim = await _claim(store, nid, 1)
        assert claim.outcome is ClaimOutcome.CLAIMED and claim.token is not None
        await store.release(nid, claim.token, handler_error=False)
    for _ in range(LIMIT):
        claim = await _claim(store, nid, 1)
        assert claim.outcome is ClaimOutcome.CLAIMED and claim.token is not None
        await store.release(nid, claim.token, handler_error=True)
    assert (await _claim(store, nid, 1)).outcome is ClaimOutcome.POISON


async def test_an_expired_notification_is_marked_by_the_claim_and_not_handed_out(
    engine: AsyncEngine, store: StatusStore
) -> None:
    nid = await _new_row(engine, expires_in_seconds=-1)
    claim = await _claim(store, nid, 1)
    assert claim.outcome is ClaimOutcome.EXPIRED and claim.status is S.EXPIRED


async def test_a_redelivery_does_not_duplicate_history(
    engine: AsyncEngine, store: StatusStore
) -> None:
    nid = await _new_row(engine)
    first = await _claim(store, nid, 1)
    await _claim(store, nid, 1)  # a copy: loses, writes nothing
    await store.finish([_done(first, S.RETRYING, retry_in_ms=10, error="421 try later")])
    second = await _claim(store, nid, 2)
    await store.finish([_done(second, S.DELIVERED)])
    assert await _history(engine, nid) == [
        ("processing", 1),
        ("retrying", 1),
        ("processing", 2),
        ("delivered", 2),
    ]


async def test_concurrent_terminal_updates_apply_once(
    engine: AsyncEngine, store: StatusStore
) -> None:
    nid = await _new_row(engine)
    results = await asyncio.gather(
        *(store.transition(nid, S.DELIVERED, attempt=1) for _ in range(5)),
        *(store.transition(nid, S.FAILED, attempt=1) for _ in range(5)),
    )
    assert sum(r.applied for r in results) == 1
    assert len([h for h in await _history(engine, nid) if h[0] in ("delivered", "failed")]) == 1


async def test_a_replay_reopens_a_failed_notification_with_fresh_history(
    engine: AsyncEngine, store: StatusStore
) -> None:
    nid = await _new_row(engine)
    claim = await _claim(store, nid, 1)
    await store.finish([_done(claim, S.FAILED, reason="permanent_failure", error="550 no")])
    assert (await store.reopen_failed(nid, "replayed from failed.queue")).applied
    again = await _claim(store, nid, 1)
    assert (await store.finish([_done(again, S.DELIVERED)])) == {nid}
    statuses = [s for s, _ in await _history(engine, nid)]
    assert statuses == ["processing", "failed", "queued", "processing", "delivered"]


async def test_text_the_database_refuses_is_a_422_not_a_500(base_settings: Settings) -> None:
    import httpx
    from sqlalchemy import text

    from shared.http import create_service_app

    engine = create_engine(base_settings, application_name="test")
    app = create_service_app(service="test", title="test")

    @app.post("/echo")
    async def echo(body: dict[str, str]) -> dict[str, str]:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT CAST(:v AS text)"), {"v": body["v"]})
        return body

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.post("/echo", json={"v": "nul\x00byte"})
    await engine.dispose()
    assert response.status_code == 422
    assert response.json()["error"] == "invalid_characters"
