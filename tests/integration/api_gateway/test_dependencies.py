"""The user and template services going down: retries, the breaker, 503 fast, recovery."""

from __future__ import annotations

import time

from tests.conftest import wait_for
from tests.integration.api_gateway.conftest import Running, send_body
from tests.integration.api_gateway.upstream import Upstream

SEND = "/v1/notifications/send"


async def test_user_service_down_opens_the_breaker_and_it_closes_after_recovery(
    gw: Running, upstream: Upstream
) -> None:
    users = [upstream.add_user() for _ in range(8)]  # fresh ids: nothing is cached
    await upstream.stop()

    # Connection refused: retried, then 503 with Retry-After; three such failures open it.
    for user_id in users[:3]:
        response = await gw.client.post(SEND, json=send_body(user_id), headers=gw.headers)
        assert response.status_code == 503
        assert response.json()["error"] == "dependency_unavailable"
        assert "retry-after" in response.headers

    # Open: answered at once, without trying the service.
    started = time.perf_counter()
    response = await gw.client.post(SEND, json=send_body(users[3]), headers=gw.headers)
    assert response.status_code == 503
    assert response.json()["error"] == "dependency_unavailable"
    assert int(response.headers["retry-after"]) >= 1
    assert time.perf_counter() - started < 0.1

    await upstream.start()
    hits_before = upstream.state.contact_hits

    async def recovered() -> bool:
        response = await gw.client.post(SEND, json=send_body(users[4]), headers=gw.headers)
        return response.status_code == 202

    await wait_for(recovered, timeout=5, interval=0.1)
    assert upstream.state.contact_hits > hits_before
    response = await gw.client.post(SEND, json=send_body(users[5]), headers=gw.headers)
    assert response.status_code == 202


async def test_transient_template_errors_are_retried(gw: Running, upstream: Upstream) -> None:
    upstream.add_template("flaky")
    upstream.state.fail_next_templates = 2  # two 500s, then an answer: within the retries
    response = await gw.client.post(
        SEND, json=send_body(upstream.add_user(), template_code="flaky"), headers=gw.headers
    )
    assert response.status_code == 202, response.text


async def test_a_404_is_not_retried_and_does_not_trip_the_breaker(
    gw: Running, upstream: Upstream
) -> None:
    import uuid

    for _ in range(5):
        hits = upstream.state.contact_hits
        response = await gw.client.post(SEND, json=send_body(uuid.uuid4()), headers=gw.headers)
        assert response.status_code == 404
        assert upstream.state.contact_hits == hits + 1
    response = await gw.client.post(SEND, json=send_body(upstream.add_user()), headers=gw.headers)
    assert response.status_code == 202


async def test_contacts_are_cached(gw: Running, upstream: Upstream) -> None:
    user_id = upstream.add_user()
    for _ in range(3):
        response = await gw.client.post(SEND, json=send_body(user_id), headers=gw.headers)
        assert response.status_code == 202
    assert upstream.state.contact_hits == 1
