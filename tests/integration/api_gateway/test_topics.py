"""Topics: subscribers, a topic send that answers at once and fans out in chunks through the
ordinary send path, and a broadcast's progress."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest

from services.api_gateway.broadcasts import StopChunk
from services.api_gateway.settings import GatewaySettings
from shared.notification_status import ClaimOutcome, Finish, NotificationStatus, StatusStore
from tests.conftest import wait_for
from tests.integration.api_gateway.conftest import Running, Tap
from tests.integration.api_gateway.upstream import Upstream

WELCOME = {"name": "Ada", "link": "https://example.com/start"}


@pytest.fixture
async def small_chunks(
    gw_settings: Callable[..., GatewaySettings],
    start_gateway: Callable[[GatewaySettings], AbstractAsyncContextManager[Running]],
    upstream: Upstream,
) -> AsyncIterator[Running]:
    """A gateway whose fan-out takes two subscribers per chunk and runs only when told."""
    upstream.add_template("welcome", "email")
    async with start_gateway(gw_settings(broadcast_chunk_size=2)) as running:
        await running.gateway.broadcasts.stop()
        yield running


def _topic() -> str:
    return "topic-" + uuid.uuid4().hex[:10]


async def _put(gw: Running, key: str, **body: Any) -> Any:
    response = await gw.client.put(f"/v1/topics/{key}", json=body, headers=gw.headers)
    assert response.status_code == 200, response.text
    return response.json()["data"]


async def _subscribers(
    gw: Running, method: str, key: str, users: list[Any], headers: dict[str, str] | None = None
) -> Any:
    return await gw.client.request(
        method,
        f"/v1/topics/{key}/subscribers",
        json={"user_ids": [str(u) for u in users]},
        headers=headers or gw.headers,
    )


async def _finish_other_broadcasts(gw: Running) -> None:
    """A pass serves the oldest broadcast with work left: let earlier tests' finish first, so
    the passes a test counts are its own."""
    while await gw.gateway.broadcasts.run_once():
        pass


async def _broadcast(gw: Running, broadcast_id: str) -> dict[str, Any]:
    response = await gw.client.get(f"/v1/broadcasts/{broadcast_id}", headers=gw.headers)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


async def test_topics_and_their_subscribers(gw: Running) -> None:
    key = _topic()
    created = await _put(gw, key, description="Release notes")
    assert (created["key"], created["description"], created["subscribers"]) == (
        key,
        "Release notes",
        0,
    )
    assert (await _put(gw, key, description="Changed"))["description"] == "Changed"

    users = [uuid.uuid4() for _ in range(3)]
    added = await _subscribers(gw, "POST", key, [*users, users[0]])
    assert added.json()["data"] == {"topic": key, "changed": 3, "subscribers": 3}
    again = await _subscribers(gw, "POST", key, users)
    assert again.json()["data"]["changed"] == 0
    removed = await _subscribers(gw, "DELETE", key, [users[0], uuid.uuid4()])
    assert removed.json()["data"] == {"topic": key, "changed": 1, "subscribers": 2}

    many = [uuid.uuid4() for _ in range(10_000)]
    assert (await _subscribers(gw, "POST", key, many)).json()["data"]["subscribers"] == 10_002
    too_many = await _subscribers(gw, "POST", key, [*many, uuid.uuid4()])
    assert too_many.status_code == 422, too_many.text

    for response in (
        await _subscribers(gw, "POST", "no-such-topic", users),
        await _subscribers(gw, "POST", key, users, headers=await gw.new_key()),
    ):
        assert response.status_code == 404 and response.json()["error"] == "topic_not_found"
    bad = await gw.client.put("/v1/topics/bad key!", json={}, headers=gw.headers)
    assert bad.status_code == 422


async def test_a_topic_send_answers_at_once_and_fans_out_in_chunks_once_each(
    small_chunks: Running, upstream: Upstream, tap: Tap
) -> None:
    gw = small_chunks
    key = _topic()
    await _put(gw, key)
    users = [upstream.add_user() for _ in range(4)]
    gone = uuid.uuid4()  # subscribed, but not a user (any more)
    await _subscribers(gw, "POST", key, [*users, gone])

    response = await gw.client.post(
        f"/v1/topics/{key}/send",
        json={"notification_type": "email", "template_code": "welcome", "variables": WELCOME},
        headers=gw.headers,
    )

    assert response.status_code == 202, response.text
    accepted = response.json()["data"]
    assert accepted["total"] == 5 and accepted["topic"] == key
    broadcast_id = accepted["broadcast_id"]
    progress = await _broadcast(gw, broadcast_id)
    assert (progress["state"], progress["fanned_out"], progress["queued"]) == ("fanning_out", 0, 5)

    # Chunk by chunk: two subscribers each, every chunk on its own.
    fanned = []
    while await gw.gateway.broadcasts.run_once():
        fanned.append((await _broadcast(gw, broadcast_id))["fanned_out"])
    assert fanned == [2, 4, 5, 5]

    # A crash after the sends of a chunk, before its cursor moved: the chunk is redone and
    # the idempotency keys send nobody twice.
    await gw.gateway.pool.execute(
        "UPDATE api_gateway.broadcasts SET cursor = NULL, fanned_out = 0, not_sent = 0,"
        " state = 'fanning_out' WHERE id = $1",
        uuid.UUID(broadcast_id),
    )
    while await gw.gateway.broadcasts.run_once():
        pass

    rows = await gw.gateway.pool.fetch(
        "SELECT id, user_id FROM api_gateway.notification_statuses WHERE broadcast_id = $1",
        uuid.UUID(broadcast_id),
    )
    assert sorted(r["user_id"] for r in rows) == sorted(users)
    ids = {str(r["id"]) for r in rows}

    async def all_published() -> bool:
        await tap.drain()
        return ids <= set(tap.ids())

    await wait_for(all_published, timeout=10)
    assert sorted(tap.ids()) == sorted(ids)

    store = StatusStore(gw.gateway.pool)
    first = rows[0]["id"]
    claim = (await store.claim([(first, 1)], lease_seconds=30, max_claims=5))[first]
    assert claim.outcome is ClaimOutcome.CLAIMED and claim.token is not None
    await store.finish([Finish(first, claim.token, NotificationStatus.DELIVERED)])
    done = await _broadcast(gw, broadcast_id)
    assert {k: done[k] for k in ("state", "total", "fanned_out", "queued", "delivered")} == {
        "state": "done",
        "total": 5,
        "fanned_out": 5,
        "queued": 3,
        "delivered": 1,
    }
    assert (done["failed"], done["skipped"]) == (0, 1)


async def test_the_fan_out_runs_by_itself(gw: Running, upstream: Upstream) -> None:
    key = _topic()
    await _put(gw, key)
    await _subscribers(gw, "POST", key, [upstream.add_user() for _ in range(3)])
    response = await gw.client.post(
        f"/v1/topics/{key}/send",
        json={"notification_type": "email", "template_code": "welcome", "variables": WELCOME},
        headers=gw.headers,
    )
    broadcast_id = response.json()["data"]["broadcast_id"]

    async def done() -> dict[str, Any] | None:
        progress = await _broadcast(gw, broadcast_id)
        return progress if progress["state"] == "done" else None

    progress = await wait_for(done, timeout=15)
    assert (progress["fanned_out"], progress["queued"], progress["skipped"]) == (3, 3, 0)


async def test_a_topic_send_is_idempotent_and_checks_before_answering(
    small_chunks: Running, upstream: Upstream
) -> None:
    gw = small_chunks
    key = _topic()
    await _put(gw, key)
    await _subscribers(gw, "POST", key, [upstream.add_user()])
    body = {
        "notification_type": "email",
        "template_code": "welcome",
        "variables": WELCOME,
        "request_id": "news-" + uuid.uuid4().hex,
    }
    first = await gw.client.post(f"/v1/topics/{key}/send", json=body, headers=gw.headers)
    again = await gw.client.post(f"/v1/topics/{key}/send", json=body, headers=gw.headers)
    assert again.status_code == 202 and again.headers["Idempotency-Replayed"] == "true"
    assert again.json() == first.json() and first.json()["data"]["created_at"] is not None
    count = await gw.gateway.pool.fetchval(
        "SELECT count(*) FROM api_gateway.broadcasts WHERE topic_key = $1", key
    )
    assert count == 1

    for path, payload, code in (
        ("/v1/topics/no-such-topic/send", {**body, "request_id": None}, "topic_not_found"),
        (f"/v1/topics/{key}/send", {**body, "template_code": "nope", "request_id": None},
         "template_not_found"),
        (f"/v1/topics/{key}/send", {**body, "variables": {}, "request_id": None},
         "missing_variables"),
    ):  # fmt: skip
        response = await gw.client.post(path, json=payload, headers=gw.headers)
        assert response.json()["error"] == code, response.text
    missing = await gw.client.get(f"/v1/broadcasts/{uuid.uuid4()}", headers=gw.headers)
    assert missing.status_code == 404 and missing.json()["error"] == "broadcast_not_found"


async def test_a_chunk_the_user_service_cannot_serve_is_redone_later(
    small_chunks: Running, upstream: Upstream
) -> None:
    gw = small_chunks
    await _finish_other_broadcasts(gw)
    key = _topic()
    await _put(gw, key)
    users = [upstream.add_user() for _ in range(2)]
    await _subscribers(gw, "POST", key, users)
    response = await gw.client.post(
        f"/v1/topics/{key}/send",
        json={"notification_type": "email", "template_code": "welcome", "variables": WELCOME},
        headers=gw.headers,
    )
    broadcast_id = response.json()["data"]["broadcast_id"]

    await upstream.stop()
    with pytest.raises(StopChunk):
        await gw.gateway.broadcasts.run_once()
    row = await gw.gateway.pool.fetchrow(
        "SELECT fanned_out, lease_until FROM api_gateway.broadcasts WHERE id = $1",
        uuid.UUID(broadcast_id),
    )
    assert row is not None and (row["fanned_out"], row["lease_until"]) == (0, None)

    await upstream.start()

    async def fanned_out() -> bool:
        try:
            await gw.gateway.broadcasts.run_once()
        except StopChunk:  # the breaker is still open for a moment
            return False
        return bool((await _broadcast(gw, broadcast_id))["fanned_out"] == 2)

    await wait_for(fanned_out, timeout=15)


async def test_subscribers_removed_while_a_topic_send_fans_out_are_not_sent_to(
    small_chunks: Running, upstream: Upstream
) -> None:
    gw = small_chunks
    await _finish_other_broadcasts(gw)
    key = _topic()
    await _put(gw, key)
    users = sorted((upstream.add_user() for _ in range(6)), key=str)
    assert (await _subscribers(gw, "POST", key, users)).status_code == 200
    response = await gw.client.post(
        f"/v1/topics/{key}/send",
        json={"notification_type": "email", "template_code": "welcome", "variables": WELCOME},
        headers=gw.headers,
    )
    assert response.status_code == 202, response.text
    broadcast_id = response.json()["data"]["broadcast_id"]

    assert await gw.gateway.broadcasts.run_once()  # the first chunk goes out
    first = {
        r["user_id"]
        for r in await gw.gateway.pool.fetch(
            "SELECT user_id FROM api_gateway.notification_statuses WHERE broadcast_id = $1",
            uuid.UUID(broadcast_id),
        )
    }
    assert len(first) == 2
    leaving = [u for u in users if u not in first][:2]
    assert (await _subscribers(gw, "DELETE", key, leaving)).status_code == 200
    while await gw.gateway.broadcasts.run_once():
        pass

    rows = await gw.gateway.pool.fetch(
        "SELECT user_id FROM api_gateway.notification_statuses WHERE broadcast_id = $1",
        uuid.UUID(broadcast_id),
    )
    sent_to = [r["user_id"] for r in rows]
    assert len(sent_to) == len(set(sent_to)) == 4  # each remaining subscriber once
    assert not set(leaving) & set(sent_to)  # nobody who left in the middle
    done = await _broadcast(gw, broadcast_id)
    assert done["state"] == "done"
