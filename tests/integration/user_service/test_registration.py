"""Registration: the success path, validation, uniqueness under concurrency, body limits."""

from __future__ import annotations

import asyncio

import httpx

from tests.integration.user_service.conftest import API, PASSWORD, Register, unique_email


def _fields(response: httpx.Response) -> set[str]:
    return {d["field"] for d in response.json()["details"]}


async def test_register_returns_the_user_without_password(client: httpx.AsyncClient) -> None:
    email = unique_email()
    response = await client.post(
        f"{API}/users", json={"name": "Ada", "email": email, "password": PASSWORD}
    )
    assert response.status_code == 201
    body = response.json()
    assert body["success"] is True and body["error"] is None
    user = body["data"]
    assert user["email"] == email
    assert user["role"] == "user"
    assert (user["locale"], user["timezone"]) == ("en", "UTC")
    assert user["preferences"] == {
        "email": True,
        "push": True,
        "quiet_hours": None,
        "categories": {},
    }
    assert PASSWORD not in response.text
    assert "password" not in response.text and "argon2" not in response.text


async def test_register_accepts_the_originals_push_token_and_preferences(
    client: httpx.AsyncClient, register: Register, internal_headers: dict[str, str]
) -> None:
    account = await register(
        push_token="fcm-token-abc",
        preferences={"email": False, "push": True},
        locale="pt-br",
        timezone="America/Sao_Paulo",
    )
    assert account.data["locale"] == "pt-BR"
    assert account.data["preferences"] == {
        "email": False,
        "push": True,
        "quiet_hours": None,
        "categories": {},
    }
    devices = await client.get(f"{API}/users/{account.id}/devices", headers=account.headers)
    assert [(d["token"], d["platform"]) for d in devices.json()["data"]] == [
        ("fcm-token-abc", "android")
    ]


async def test_register_with_trailing_slash_like_the_original(client: httpx.AsyncClient) -> None:
    response = await client.post(
        f"{API}/users/", json={"name": "Ada", "email": unique_email(), "password": PASSWORD}
    )
    assert response.status_code == 201


async def test_unknown_field_is_rejected_by_name(client: httpx.AsyncClient) -> None:
    response = await client.post(
        f"{API}/users",
        json={"name": "Ada", "email": unique_email(), "password": PASSWORD, "role": "admin"},
    )
    assert response.status_code == 422
    assert response.json()["error"] == "validation_error"
    assert _fields(response) == {"role"}


async def test_each_malformed_field_is_named(client: httpx.AsyncClient) -> None:
    response = await client.post(
        f"{API}/users",
        json={
            "name": "Eve\r\nBcc: victim@example.com",
            "email": "not-an-email",
            "password": "short",
            "locale": "english!",
            "timezone": "Mars/Olympus",
            "preferences": {"email": "yes", "push": True},
            "push_token": "has spaces",
        },
    )
    assert response.status_code == 422
    assert _fields(response) == {
        "name",
        "email",
        "password",
        "locale",
        "timezone",
        "preferences.email",
        "push_token",
    }


async def test_missing_fields_are_named(client: httpx.AsyncClient) -> None:
    response = await client.post(f"{API}/users", json={})
    assert response.status_code == 422
    assert _fields(response) == {"name", "email", "password"}


async def test_encoded_word_in_name_is_rejected(client: httpx.AsyncClient) -> None:
    response = await client.post(
        f"{API}/users",
        json={"name": "=?UTF-8?Q?a=0Ab?=", "email": unique_email(), "password": PASSWORD},
    )
    assert response.status_code == 422
    assert _fields(response) == {"name"}


async def test_duplicate_email_is_409_case_insensitively(client: httpx.AsyncClient) -> None:
    email = unique_email()
    first = await client.post(
        f"{API}/users", json={"name": "A", "email": email, "password": PASSWORD}
    )
    assert first.status_code == 201
    second = await client.post(
        f"{API}/users", json={"name": "B", "email": email.upper(), "password": PASSWORD}
    )
    assert second.status_code == 409
    assert second.json()["error"] == "email_taken"


async def test_concurrent_duplicate_registration_one_wins(client: httpx.AsyncClient) -> None:
    email = unique_email()
    bodies = [
        {"name": "A", "email": email, "password": PASSWORD},
        {"name": "B", "email": email.upper(), "password": PASSWORD},
    ]
    responses = await asyncio.gather(*(client.post(f"{API}/users", json=b) for b in bodies))
    assert sorted(r.status_code for r in responses) == [201, 409]
    loser = next(r for r in responses if r.status_code == 409)
    assert loser.json()["error"] == "email_taken"


async def test_body_over_64_kib_is_413(client: httpx.AsyncClient) -> None:
    response = await client.post(
        f"{API}/users",
        json={"name": "A", "email": unique_email(), "password": "x" * (65 * 1024)},
    )
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"


async def test_malformed_json_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post(
        f"{API}/users", content=b'{"name": ', headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_json"
