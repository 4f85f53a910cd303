"""Push delivery end to end inside the worker: queue -> render -> FCM stand-in -> status."""

from __future__ import annotations

from typing import Any

from devtools.stack import free_port
from shared.messaging.message import DeviceTarget
from tests.conftest import wait_for
from tests.integration.push_service.conftest import INTERNAL_KEY, PushHarness, UserServiceStub


async def test_delivers_a_rich_push_to_every_device(push: PushHarness) -> None:
    devices = [
        DeviceTarget(token="phone-a", platform="android"),
        DeviceTarget(token="phone-i", platform="ios"),
        DeviceTarget(token="browser-w", platform="web"),
    ]
    nid = await push.notify(*devices)

    row = await wait_for(lambda: push.settled(nid))
    assert row["status"] == "delivered"
    assert row["provider_message_id"].startswith("projects/push-test/messages/")

    received = {m["token"]: m["message"] for m in await push.received()}
    assert set(received) == {"phone-a", "phone-i", "browser-w"}
    android = received["phone-a"]
    assert android["notification"] == {
        "title": "Welcome, Ada!",
        "body": "Hello Ada, tap to start.",
        "image": "https://img.example/ada.png",
    }
    assert android["data"] == {
        "screen": "home",
        "user": "Ada",
        "link": "https://app.example/start",
        "notification_id": str(nid),
    }
    assert "android" in android
    assert received["phone-i"]["apns"]["payload"]["aps"]["mutable-content"] == 1
    assert received["browser-w"]["webpush"]["fcm_options"]["link"] == "https://app.example/start"
    results = await push.device_results(nid)
    assert {t: s for t, (s, _) in results.items()} == dict.fromkeys(received, "accepted")


async def test_access_token_is_fetched_once_and_refreshed_when_revoked(push: PushHarness) -> None:
    for token in ("t1", "t2"):
        nid = await push.notify(token)
        assert (await wait_for(lambda nid=nid: push.settled(nid)))["status"] == "delivered"
    assert (await push.stats())["token_requests"] == 1
    assert push.app.state.fcm.tokens.fetches == 1

    await push.standin.delete("/emulator/tokens")  # FCM now answers 401 to the cached token
    nid = await push.notify("t3")
    assert (await wait_for(lambda: push.settled(nid)))["status"] == "delivered"
    assert (await push.stats())["token_requests"] == 2


async def test_dead_token_is_removed_through_the_user_service(
    push: PushHarness, users: UserServiceStub
) -> None:
    await push.fault("gone:APA91b-x_y", "unregistered")
    nid = await push.notify("alive", "gone:APA91b-x_y")

    row = await wait_for(lambda: push.settled(nid))
    assert row["status"] == "delivered"
    assert users.removed == [("gone:APA91b-x_y", INTERNAL_KEY)]
    results = await push.device_results(nid)
    assert results == {"alive": ("accepted", None), "gone:APA91b-x_y": ("rejected", "UNREGISTERED")}


async def test_user_service_down_does_not_hold_up_delivery(harness_factory: Any) -> None:
    async with harness_factory(f"http://127.0.0.1:{free_port()}") as push:
        await push.fault("gone", "unregistered")
        nid = await push.notify("alive", "gone")
        assert (await wait_for(lambda: push.settled(nid)))["status"] == "delivered"


async def test_unavailable_retries_only_the_devices_not_yet_accepted(push: PushHarness) -> None:
    await push.fault("busy", "unavailable", seconds=1, times=1)
    nid = await push.notify("fine", "busy")

    row = await wait_for(lambda: push.settled(nid))
    assert (row["status"], row["attempts"]) == ("delivered", 2)
    sends = [r["token"] for r in await push.send_requests()]
    assert sorted(sends) == ["busy", "busy", "fine"]  # "fine" was not sent again
    assert sorted(m["token"] for m in await push.received()) == ["busy", "fine"]

    history = await push.history(nid)
    retrying = [detail for status, detail in history if status == "retrying"]
    # Retry-After: 1 s is a floor: the backoff alone (base 100 ms) would pick the 100 ms queue.
    assert len(retrying) == 1 and "next in 1600 ms" in (retrying[0] or "")
    assert "UNAVAILABLE" in (row["last_error"] or "")


async def test_invalid_argument_for_every_device_fails_to_the_dlq(
    push: PushHarness, users: UserServiceStub
) -> None:
    for token in ("bad-1", "bad-2"):
        await push.fault(token, "invalid_argument")
    nid = await push.notify("bad-1", "bad-2")

    row = await wait_for(lambda: push.settled(nid))
    assert row["status"] == "failed"
    assert "INVALID_ARGUMENT" in row["last_error"]
    assert await push.received() == []
    assert sorted(token for token, _ in users.removed) == ["bad-1", "bad-2"]

    async def dead_letter() -> dict[str, Any] | None:
        listed = (await push.client.get("/admin/dlq")).json()["data"]
        return next((d for d in listed if d["message_id"] == str(nid)), None)

    letter = await wait_for(dead_letter)
    assert (letter["reason"], letter["channel"]) == ("permanent_failure", "push")


async def test_unknown_template_fails_without_sending(push: PushHarness) -> None:
    nid = await push.notify("phone", code="missing")
    row = await wait_for(lambda: push.settled(nid))
    assert row["status"] == "failed"
    assert "template_not_found" in row["last_error"]
    assert (await push.stats())["send_requests"] == 0


async def test_health_reports_database_broker_and_consumer(push: PushHarness) -> None:
    response = await push.client.get("/health")
    assert response.status_code == 200
    assert response.json()["data"]["checks"] == {"db": "up", "broker": "up", "consumer": "up"}
