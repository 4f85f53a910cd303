"""`collapse_key`: within the window, a later send with the same key to the same user and
channel (same API key) is `skipped` (`collapsed`) and names the notification it fell into."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from services.api_gateway.settings import GatewaySettings
from tests.integration.api_gateway.conftest import Running, Tap, send_body
from tests.integration.api_gateway.upstream import Upstream

DEVICE = [{"token": "tok-collapse", "platform": "android"}]


def collapsing(user_id: uuid.UUID, key: str, **overrides: Any) -> dict[str, Any]:
    return send_body(user_id, **{"collapse_key": key, "collapse_window_seconds": 300, **overrides})


async def _send(gw: Running, body: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
    response = await gw.client.post(
        "/v1/notifications/send", json=body, headers=headers or gw.headers
    )
    assert response.status_code == 202, response.text
    return response.json()["data"]


async def _row(gw: Running, notification_id: str) -> dict[str, Any]:
    row = await gw.gateway.pool.fetchrow(
        "SELECT status, status_reason, payload FROM api_gateway.notification_statuses"
        " WHERE id = $1",
        uuid.UUID(notification_id),
    )
    assert row is not None
    return dict(row)


async def test_a_later_send_within_the_window_is_collapsed_into_the_first(
    gw: Running, upstream: Upstream, tap: Tap
) -> None:
    user_id = upstream.add_user()
    key = "unread-" + uuid.uuid4().hex
    first = await _send(gw, collapsing(user_id, key))
    second = await _send(gw, collapsing(user_id, key))

    assert (first["status"], first["collapsed_into"]) == ("queued", None)
    assert (second["status"], second["status_reason"]) == ("skipped", "collapsed")
    assert second["collapsed_into"] == first["notification_id"]
    row = await _row(gw, second["notification_id"])
    assert (row["status"], row["status_reason"], row["payload"]) == ("skipped", "collapsed", None)
    status = await gw.client.get(
        f"/v1/notifications/{second['notification_id']}/status", headers=gw.headers
    )
    assert status.json()["data"]["history"][0]["detail"] == (
        f"collapsed into {first['notification_id']}"
    )
    await tap.drain()
    assert second["notification_id"] not in tap.ids()
    # A plain send has no collapsed_into at all.
    plain = await _send(gw, send_body(user_id))
    assert "collapsed_into" not in plain


async def test_only_the_same_key_user_channel_and_api_key_collapse(
    gw: Running, upstream: Upstream
) -> None:
    user_id = upstream.add_user(devices=DEVICE)
    key = "k-" + uuid.uuid4().hex
    first = await _send(gw, collapsing(user_id, key))
    others = [
        collapsing(user_id, key + "-other"),
        collapsing(upstream.add_user(), key),
        collapsing(user_id, key, notification_type="push"),
    ]
    for body in others:
        assert (await _send(gw, body))["status"] == "queued", body
    other_key = await gw.new_key()
    assert (await _send(gw, collapsing(user_id, key), headers=other_key))["status"] == "queued"
    assert (await _send(gw, collapsing(user_id, key)))["collapsed_into"] == first["notification_id"]


async def test_after_the_window_a_send_opens_a_new_one(gw: Running, upstream: Upstream) -> None:
    user_id = upstream.add_user()
    key = "w-" + uuid.uuid4().hex
    first = await _send(gw, collapsing(user_id, key))
    # The window's end passes (set on the database's clock, as the window is measured).
    await gw.gateway.pool.execute(
        "UPDATE api_gateway.collapse_windows SET window_ends_at = now() - interval '1 second'"
        " WHERE collapse_key = $1",
        key,
    )
    second = await _send(gw, collapsing(user_id, key))
    third = await _send(gw, collapsing(user_id, key))
    assert (second["status"], second["collapsed_into"]) == ("queued", None)
    assert third["collapsed_into"] == second["notification_id"] != first["notification_id"]


async def test_concurrent_sends_with_one_key_send_exactly_one(
    gw: Running, upstream: Upstream
) -> None:
    user_id = upstream.add_user()
    key = "race-" + uuid.uuid4().hex
    answers = await asyncio.gather(*(_send(gw, collapsing(user_id, key)) for _ in range(10)))

    heads = [a for a in answers if a["status"] == "queued"]
    assert len(heads) == 1
    assert {a["collapsed_into"] for a in answers if a is not heads[0]} == {
        heads[0]["notification_id"]
    }


async def test_the_window_holds_across_a_gateway_restart(
    gw_settings: Callable[..., GatewaySettings],
    start_gateway: Callable[[GatewaySettings], AbstractAsyncContextManager[Running]],
    upstream: Upstream,
) -> None:
    upstream.add_template("welcome", "email")
    user_id = upstream.add_user()
    key = "restart-" + uuid.uuid4().hex
    async with start_gateway(gw_settings()) as before:
        first = await _send(before, collapsing(user_id, key))
        headers = before.headers
    async with start_gateway(gw_settings()) as after:
        second = await _send(after, collapsing(user_id, key), headers=headers)
    assert second["collapsed_into"] == first["notification_id"]


async def test_a_replay_of_a_collapsed_send_answers_the_same(
    gw: Running, upstream: Upstream
) -> None:
    user_id = upstream.add_user()
    key = "replay-" + uuid.uuid4().hex
    await _send(gw, collapsing(user_id, key))
    body = collapsing(user_id, key, request_id="again-" + uuid.uuid4().hex)
    first = await gw.client.post("/v1/notifications/send", json=body, headers=gw.headers)
    again = await gw.client.post("/v1/notifications/send", json=body, headers=gw.headers)
    assert again.headers["Idempotency-Replayed"] == "true"
    assert again.json() == first.json()
    assert first.json()["data"]["status_reason"] == "collapsed"


async def test_collapse_fields_must_come_together_and_not_with_channels(
    gw: Running, upstream: Upstream
) -> None:
    user_id = upstream.add_user()
    group = collapsing(user_id, "k", channels=["email", "push"])
    del group["notification_type"]
    for body in (
        send_body(user_id, collapse_key="k"),
        send_body(user_id, collapse_window_seconds=60),
        collapsing(user_id, "k", collapse_window_seconds=0),
        collapsing(user_id, ""),
        group,
    ):
        response = await gw.client.post("/v1/notifications/send", json=body, headers=gw.headers)
        assert response.status_code == 422, (body, response.text)
