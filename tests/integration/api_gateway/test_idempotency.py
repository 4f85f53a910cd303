"""Idempotency: replay, key reuse, in-flight conflicts, concurrent duplicates, released keys."""

from __future__ import annotations

import asyncio
import uuid

from tests.conftest import wait_for
from tests.integration.api_gateway.conftest import Running, Tap, send_body
from tests.integration.api_gateway.upstream import Upstream

SEND = "/v1/notifications/send"


async def _rows_for(gw: Running, request_id: str) -> int:
    count: int = await gw.gateway.pool.fetchval(
        "SELECT count(*) FROM api_gateway.notification_statuses WHERE request_id = $1",
        request_id,
    )
    return count


async def test_replay_returns_the_first_response_and_publishes_nothing_again(
    gw: Running, upstream: Upstream, tap: Tap
) -> None:
    body = send_body(upstream.add_user())
    headers = {**gw.headers, "Idempotency-Key": "order-" + uuid.uuid4().hex}
    first = await gw.client.post(SEND, json=body, headers=headers)
    assert first.status_code == 202, first.text
    assert "idempotency-replayed" not in first.headers

    reordered = dict(reversed(list(body.items())))  # same body, other key order
    quoted = {**headers, "Idempotency-Key": f'"{headers["Idempotency-Key"]}"'}
    second = await gw.client.post(SEND, json=reordered, headers=quoted)
    assert second.status_code == first.status_code
    assert second.headers["idempotency-replayed"] == "true"
    assert second.json() == first.json()

    await wait_for(tap.drain)
    await asyncio.sleep(0)  # nothing to wait for: the replay published nothing
    assert tap.ids() == [first.json()["data"]["notification_id"]]


async def test_request_id_is_the_key_by_default(gw: Running, upstream: Upstream) -> None:
    request_id = uuid.uuid4().hex
    body = send_body(upstream.add_user(), request_id=request_id)
    first = await gw.client.post(SEND, json=body, headers=gw.headers)
    second = await gw.client.post(SEND, json=body, headers=gw.headers)
    assert first.status_code == second.status_code == 202
    assert second.headers["idempotency-replayed"] == "true"
    assert await _rows_for(gw, request_id) == 1


async def test_the_key_is_scoped_to_the_api_key(gw: Running, upstream: Upstream) -> None:
    request_id = uuid.uuid4().hex
    body = send_body(upstream.add_user(), request_id=request_id)
    other = await gw.new_key()
    first = await gw.client.post(SEND, json=body, headers=gw.headers)
    second = await gw.client.post(SEND, json=body, headers=other)
    assert first.status_code == second.status_code == 202
    assert "idempotency-replayed" not in second.headers
    assert await _rows_for(gw, request_id) == 2


async def test_same_key_with_another_body_is_422(gw: Running, upstream: Upstream) -> None:
    user_id = upstream.add_user()
    headers = {**gw.headers, "Idempotency-Key": uuid.uuid4().hex}
    first = await gw.client.post(SEND, json=send_body(user_id), headers=headers)
    assert first.status_code == 202
    changed = send_body(user_id, variables={"name": "Grace", "link": "https://x.test"})
    second = await gw.client.post(SEND, json=changed, headers=headers)
    assert second.status_code == 422
    assert second.json()["error"] == "idempotency_key_reused"


async def test_invalid_idempotency_key_is_400(gw: Running, upstream: Upstream) -> None:
    body = send_body(upstream.add_user())
    for key in ("", "x" * 256, "with space", '""'):
        response = await gw.client.post(
            SEND, json=body, headers={**gw.headers, "Idempotency-Key": key}
        )
        assert response.status_code == 400, key
        assert response.json()["error"] == "invalid_idempotency_key"


async def test_same_key_in_flight_is_409_with_retry_after(gw: Running, upstream: Upstream) -> None:
    body = send_body(upstream.add_user())
    headers = {**gw.headers, "Idempotency-Key": uuid.uuid4().hex}
    upstream.state.contact_delay = 0.5  # the first request is still enriching
    first = asyncio.create_task(gw.client.post(SEND, json=body, headers=headers))
    await wait_for(lambda: _true(upstream.state.contact_hits > 0))
    second = await gw.client.post(SEND, json=body, headers=headers)
    assert second.status_code == 409
    assert second.json()["error"] == "request_in_progress"
    assert int(second.headers["retry-after"]) >= 1
    assert (await first).status_code == 202
    third = await gw.client.post(SEND, json=body, headers=headers)
    assert third.status_code == 202 and third.headers["idempotency-replayed"] == "true"


async def _true(value: bool) -> bool:
    return value


async def test_concurrent_identical_requests_make_exactly_one_notification(
    gw: Running, upstream: Upstream, tap: Tap
) -> None:
    request_id = uuid.uuid4().hex
    body = send_body(upstream.add_user(), request_id=request_id)
    upstream.state.contact_delay = 0.05
    responses = await asyncio.gather(
        *(gw.client.post(SEND, json=body, headers=gw.headers) for _ in range(12))
    )
    codes = sorted(r.status_code for r in responses)
    assert set(codes) <= {202, 409}, codes
    fresh = [
        r for r in responses if r.status_code == 202 and "idempotency-replayed" not in r.headers
    ]
    assert len(fresh) == 1
    ids = {r.json()["data"]["notification_id"] for r in responses if r.status_code == 202}
    assert len(ids) == 1
    assert await _rows_for(gw, request_id) == 1
    await wait_for(tap.drain)
    assert tap.ids() == list(ids)


async def test_a_failure_before_acceptance_does_not_pin_the_key(
    gw: Running, upstream: Upstream
) -> None:
    user_id = uuid.uuid4()
    body = send_body(user_id)
    headers = {**gw.headers, "Idempotency-Key": uuid.uuid4().hex}
    first = await gw.client.post(SEND, json=body, headers=headers)
    assert first.status_code == 404  # the user does not exist yet

    upstream.state.users[str(user_id)] = upstream.state.users[str(upstream.add_user())] | {
        "user_id": str(user_id)
    }
    retry = await gw.client.post(SEND, json=body, headers=headers)
    assert retry.status_code == 202, retry.text
    assert "idempotency-replayed" not in retry.headers


async def test_a_claim_left_by_a_dead_request_can_be_taken_over(
    gw: Running, upstream: Upstream
) -> None:
    body = send_body(upstream.add_user())
    key = uuid.uuid4().hex
    from services.api_gateway.idempotency import fingerprint

    api_key = await gw.gateway.api_keys.verify(gw.api_key)
    assert api_key is not None
    # A crashed process left a pending claim behind, older than the pending timeout.
    await gw.gateway.pool.execute(
        """INSERT INTO api_gateway.idempotency_records
               (api_key_id, key, fingerprint, state, claim_token, created_at, expires_at)
           VALUES ($1, $2, $3, 'pending', $4, now() - interval '1 hour', now() + interval '1 day')""",
        api_key.id,
        key,
        fingerprint(body),
        uuid.uuid4(),
    )
    response = await gw.client.post(SEND, json=body, headers={**gw.headers, "Idempotency-Key": key})
    assert response.status_code == 202, response.text
