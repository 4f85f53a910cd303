"""Status transitions are monotonic and recorded once (shared/notification_status.py)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db import create_asyncpg_pool, create_engine
from shared.notification_status import (
    NotificationStatus as S,
)
from shared.notification_status import (
    StatusStore,
    notification_status_history,
    notification_statuses,
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


async def _new_row(engine: AsyncEngine) -> uuid.UUID:
    notification_id = uuid.uuid4()
    async with engine.begin() as conn:
        await conn.execute(
            insert(notification_statuses).values(
                id=notification_id,
                notification_type="email",
                user_id=uuid.uuid4(),
                template_code="welcome",
                status=S.QUEUED.value,
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


async def test_a_stale_update_never_moves_a_delivered_notification_back(
    engine: AsyncEngine, store: StatusStore
) -> None:
    nid = await _new_row(engine)
    assert (await store.transition(nid, S.PROCESSING, attempt=1)).applied
    assert (await store.transition(nid, S.DELIVERED, attempt=1, provider_id="m-1")).applied

    late = await store.transition(nid, S.PROCESSING, attempt=1)
    assert not late.applied and late.status is S.DELIVERED
    assert not (await store.transition(nid, S.FAILED, attempt=1, error="late")).applied
    assert await store.current(nid) is S.DELIVERED


async def test_a_redelivery_does_not_duplicate_history(
    engine: AsyncEngine, store: StatusStore
) -> None:
    nid = await _new_row(engine)
    await store.transition(nid, S.PROCESSING, attempt=1)
    await store.transition(nid, S.PROCESSING, attempt=1)  # the same attempt redelivered
    await store.transition(nid, S.RETRYING, attempt=1, error="421 try later")
    await store.transition(nid, S.PROCESSING, attempt=2)
    await store.transition(nid, S.DELIVERED, attempt=2)
    assert await _history(engine, nid) == [
        ("processing", 1),
        ("retrying", 1),
        ("processing", 2),
        ("delivered", 2),
    ]


async def test_an_older_attempt_is_refused_once_a_newer_one_ran(
    engine: AsyncEngine, store: StatusStore
) -> None:
    nid = await _new_row(engine)
    await store.transition(nid, S.PROCESSING, attempt=2, stale_guard=True)
    old = await store.transition(nid, S.PROCESSING, attempt=1, stale_guard=True)
    assert not old.applied and old.status is S.PROCESSING


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
    await store.transition(nid, S.PROCESSING, attempt=1)
    await store.transition(nid, S.FAILED, attempt=1, error="550 no such user")
    assert (await store.reopen_failed(nid, "replayed from failed.queue")).applied
    assert (await store.transition(nid, S.PROCESSING, attempt=1)).applied
    assert (await store.transition(nid, S.DELIVERED, attempt=1)).applied
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
