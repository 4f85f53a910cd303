"""Profile reads and updates, admin listing, the cross-user 403, and deletion."""

from __future__ import annotations

import uuid

import httpx
from fastapi import FastAPI
from sqlalchemy import func, select

from services.user_service.models import Device, Preferences
from shared.db import session_scope
from tests.integration.user_service.conftest import API, PASSWORD, Account, Register


async def test_me_can_be_read_and_updated(client: httpx.AsyncClient, register: Register) -> None:
    account = await register()
    response = await client.patch(
        f"{API}/users/me",
        headers=account.headers,
        json={"name": "Ada King", "locale": "fr-ca", "timezone": "America/Toronto"},
    )
    assert response.status_code == 200
    data = response.json()["data"]
    assert (data["name"], data["locale"], data["timezone"]) == (
        "Ada King",
        "fr-CA",
        "America/Toronto",
    )
    me = (await client.get(f"{API}/users/me", headers=account.headers)).json()["data"]
    assert me["name"] == "Ada King"


async def test_password_change_needs_the_current_password(
    client: httpx.AsyncClient, register: Register
) -> None:
    account = await register()
    without = await client.patch(
        f"{API}/users/me", headers=account.headers, json={"password": "new-password-1"}
    )
    wrong = await client.patch(
        f"{API}/users/me",
        headers=account.headers,
        json={"password": "new-password-1", "current_password": "not-it-at-all"},
    )
    for response in (without, wrong):
        assert response.status_code == 403
        assert response.json()["error"] == "invalid_current_password"
    right = await client.patch(
        f"{API}/users/me",
        headers=account.headers,
        json={"password": "new-password-1", "current_password": PASSWORD},
    )
    assert right.status_code == 200
    old = await client.post(
        f"{API}/auth/login", json={"email": account.email, "password": PASSWORD}
    )
    new = await client.post(
        f"{API}/auth/login", json={"email": account.email, "password": "new-password-1"}
    )
    assert (old.status_code, new.status_code) == (401, 200)


async def test_an_email_change_needs_the_current_password_and_a_free_address(
    client: httpx.AsyncClient, register: Register
) -> None:
    account, other = await register(), await register()
    new_email = f"moved-{uuid.uuid4().hex[:10]}@example.com"
    without = await client.patch(
        f"{API}/users/me", headers=account.headers, json={"email": new_email}
    )
    assert (without.status_code, without.json()["error"]) == (403, "invalid_current_password")
    taken = await client.patch(
        f"{API}/users/me",
        headers=account.headers,
        json={"email": other.email.upper(), "current_password": PASSWORD},
    )
    assert (taken.status_code, taken.json()["error"]) == (409, "email_taken")
    moved = await client.patch(
        f"{API}/users/me",
        headers=account.headers,
        json={"email": new_email, "current_password": PASSWORD},
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["data"]["email"] == new_email
    login = await client.post(f"{API}/auth/login", json={"email": new_email, "password": PASSWORD})
    assert login.status_code == 200


async def test_admin_resets_another_users_password(
    client: httpx.AsyncClient, register: Register, admin: Account
) -> None:
    account = await register()
    response = await client.patch(
        f"{API}/users/{account.id}", headers=admin.headers, json={"password": "reset-by-admin"}
    )
    assert response.status_code == 200
    login = await client.post(
        f"{API}/auth/login", json={"email": account.email, "password": "reset-by-admin"}
    )
    assert login.status_code == 200


async def test_patch_rejects_null_and_unknown_fields(
    client: httpx.AsyncClient, register: Register
) -> None:
    account = await register()
    response = await client.patch(
        f"{API}/users/me", headers=account.headers, json={"name": None, "role": "admin"}
    )
    assert response.status_code == 422
    assert {d["field"] for d in response.json()["details"]} == {"name", "role"}


async def test_a_user_cannot_reach_another_user(
    client: httpx.AsyncClient, register: Register
) -> None:
    alice, bob = await register(), await register()
    device = await client.post(
        f"{API}/users/{bob.id}/devices",
        headers=bob.headers,
        json={"token": "bob-device", "platform": "ios"},
    )
    device_id = device.json()["data"]["id"]
    attempts = [
        ("GET", f"/users/{bob.id}", None),
        ("PATCH", f"/users/{bob.id}", {"name": "Mallory"}),
        ("DELETE", f"/users/{bob.id}", None),
        ("GET", f"/users/{bob.id}/preferences", None),
        ("PUT", f"/users/{bob.id}/preferences", {"email": False, "push": False}),
        ("GET", f"/users/{bob.id}/devices", None),
        ("POST", f"/users/{bob.id}/devices", {"token": "evil", "platform": "web"}),
        ("DELETE", f"/users/{bob.id}/devices/{device_id}", None),
        ("GET", f"/users/{uuid.uuid4()}", None),
        ("GET", "/users", None),
    ]
    for method, path, body in attempts:
        response = await client.request(method, f"{API}{path}", headers=alice.headers, json=body)
        assert response.status_code == 403, (method, path)
        assert response.json()["error"] == "forbidden"
    still = await client.get(f"{API}/users/{bob.id}", headers=bob.headers)
    assert still.json()["data"]["name"] == "Ada Lovelace"


async def test_admin_reaches_anyone_and_lists_with_paging(
    client: httpx.AsyncClient, register: Register, admin: Account
) -> None:
    tag = uuid.uuid4().hex[:8]
    created = [await register(email=f"list-{tag}-{i}@example.com") for i in range(3)]
    one = await client.get(f"{API}/users/{created[0].id}", headers=admin.headers)
    assert one.status_code == 200
    page1 = await client.get(
        f"{API}/users", headers=admin.headers, params={"email": f"LIST-{tag}", "limit": 2}
    )
    assert page1.status_code == 200
    body = page1.json()
    assert body["meta"] == {
        "total": 3,
        "limit": 2,
        "page": 1,
        "total_pages": 2,
        "has_next": True,
        "has_previous": False,
    }
    page2 = await client.get(
        f"{API}/users",
        headers=admin.headers,
        params={"email": f"list-{tag}", "limit": 2, "page": 2},
    )
    emails = [u["email"] for u in body["data"] + page2.json()["data"]]
    assert sorted(emails) == sorted(a.email for a in created)
    assert "password_hash" not in page1.text


async def test_bad_paging_and_ids_are_422_naming_the_field(
    client: httpx.AsyncClient, admin: Account
) -> None:
    paging = await client.get(
        f"{API}/users", headers=admin.headers, params={"limit": 0, "page": "x"}
    )
    assert paging.status_code == 422
    assert {d["field"] for d in paging.json()["details"]} == {"limit", "page"}
    bad_id = await client.get(f"{API}/users/not-a-uuid", headers=admin.headers)
    assert bad_id.status_code == 422
    assert [d["field"] for d in bad_id.json()["details"]] == ["user_id"]


async def test_unknown_user_is_404(client: httpx.AsyncClient, admin: Account) -> None:
    response = await client.get(f"{API}/users/{uuid.uuid4()}", headers=admin.headers)
    assert response.status_code == 404
    assert response.json()["error"] == "user_not_found"


async def test_deleting_a_user_removes_devices_and_preferences(
    app: FastAPI, client: httpx.AsyncClient, register: Register
) -> None:
    account = await register(push_token=f"tok-{uuid.uuid4().hex}")
    response = await client.delete(f"{API}/users/{account.id}", headers=account.headers)
    assert response.status_code == 200 and response.json()["data"] is None
    async with session_scope(app.state.accounts.sessions) as session:
        devices = await session.scalar(
            select(func.count()).select_from(Device).where(Device.user_id == account.id)
        )
        preferences = await session.get(Preferences, account.id)
    assert (devices, preferences) == (0, None)
    gone = await client.get(f"{API}/users/me", headers=account.headers)
    assert gone.status_code == 401 and gone.json()["error"] == "token_revoked"
