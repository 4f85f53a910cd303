"""Preferences (with quiet hours) and devices (idempotent on the token)."""

from __future__ import annotations

import uuid

import httpx

from tests.integration.user_service.conftest import API, Register


async def test_preferences_round_trip_with_quiet_hours(
    client: httpx.AsyncClient, register: Register
) -> None:
    account = await register()
    url = f"{API}/users/{account.id}/preferences"
    body = {"email": False, "push": True, "quiet_hours": {"start": "22:00", "end": "07:00"}}
    put = await client.put(url, headers=account.headers, json=body)
    body["categories"] = {}
    assert put.status_code == 200 and put.json()["data"] == body
    assert (await client.get(url, headers=account.headers)).json()["data"] == body
    cleared = await client.put(url, headers=account.headers, json={"email": True, "push": True})
    assert cleared.json()["data"] == {
        "email": True,
        "push": True,
        "quiet_hours": None,
        "categories": {},
    }


async def test_bad_preferences_name_the_field(
    client: httpx.AsyncClient, register: Register
) -> None:
    account = await register()
    url = f"{API}/users/{account.id}/preferences"
    cases = [
        ({"email": True}, {"push"}),
        ({"email": 1, "push": True}, {"email"}),
        (
            {"email": True, "push": True, "quiet_hours": {"start": "25:00", "end": "7"}},
            {"quiet_hours.start", "quiet_hours.end"},
        ),
        (
            {"email": True, "push": True, "quiet_hours": {"start": "22:00", "end": "22:00"}},
            {"quiet_hours"},
        ),
        ({"email": True, "push": True, "sms": True}, {"sms"}),
    ]
    for body, fields in cases:
        response = await client.put(url, headers=account.headers, json=body)
        assert response.status_code == 422, body
        assert {d["field"] for d in response.json()["details"]} == fields, body


async def test_devices_are_idempotent_on_token(
    client: httpx.AsyncClient, register: Register
) -> None:
    account = await register()
    url = f"{API}/users/{account.id}/devices"
    token = f"fcm-{uuid.uuid4().hex}"
    first = await client.post(
        url, headers=account.headers, json={"token": token, "platform": "ios"}
    )
    again = await client.post(
        url, headers=account.headers, json={"token": token, "platform": "ios"}
    )
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["data"]["id"] == again.json()["data"]["id"]
    await client.post(url, headers=account.headers, json={"token": "web-1", "platform": "web"})
    listed = await client.get(url, headers=account.headers, params={"limit": 1})
    assert listed.json()["meta"]["total"] == 2
    assert [d["token"] for d in listed.json()["data"]] == [token]
    device_id = first.json()["data"]["id"]
    removed = await client.delete(f"{url}/{device_id}", headers=account.headers)
    assert removed.status_code == 200
    missing = await client.delete(f"{url}/{device_id}", headers=account.headers)
    assert missing.status_code == 404 and missing.json()["error"] == "device_not_found"


async def test_a_token_moves_to_the_user_who_registers_it_last(
    client: httpx.AsyncClient, register: Register
) -> None:
    alice, bob = await register(), await register()
    token = f"shared-{uuid.uuid4().hex}"
    body = {"token": token, "platform": "android"}
    await client.post(f"{API}/users/{alice.id}/devices", headers=alice.headers, json=body)
    moved = await client.post(f"{API}/users/{bob.id}/devices", headers=bob.headers, json=body)
    assert moved.status_code == 201  # like a first registration (tests/security: F6)
    alice_devices = await client.get(f"{API}/users/{alice.id}/devices", headers=alice.headers)
    bob_devices = await client.get(f"{API}/users/{bob.id}/devices", headers=bob.headers)
    assert alice_devices.json()["data"] == []
    assert [d["token"] for d in bob_devices.json()["data"]] == [token]


async def test_bad_devices_name_the_field(client: httpx.AsyncClient, register: Register) -> None:
    account = await register()
    response = await client.post(
        f"{API}/users/{account.id}/devices",
        headers=account.headers,
        json={"token": "", "platform": "blackberry"},
    )
    assert response.status_code == 422
    assert {d["field"] for d in response.json()["details"]} == {"token", "platform"}
