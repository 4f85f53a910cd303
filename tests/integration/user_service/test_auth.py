"""Login and token checks: one answer for every credential failure, and every bad token
refused (none, expired, another key, `alg: none`)."""

from __future__ import annotations

import base64
import json
import time
import uuid

import httpx
import jwt
import pytest

from services.user_service.settings import UserServiceSettings
from tests.integration.user_service.conftest import API, PASSWORD, Register, running, unique_email


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _claims(user_id: uuid.UUID, **overrides: object) -> dict[str, object]:
    now = int(time.time())
    return {"sub": str(user_id), "role": "user", "iat": now, "exp": now + 600, **overrides}


async def test_login_issues_a_verifiable_token(
    client: httpx.AsyncClient, register: Register, us_settings: UserServiceSettings
) -> None:
    account = await register()
    response = await client.post(
        f"{API}/auth/login", json={"email": account.email.upper(), "password": PASSWORD}
    )
    assert response.status_code == 200
    data = response.json()["data"]
    assert data["token_type"] == "bearer"
    assert data["expires_in"] == us_settings.jwt_ttl_seconds
    claims = jwt.decode(
        data["access_token"], us_settings.jwt_secret.get_secret_value(), algorithms=["HS256"]
    )
    assert claims["sub"] == str(account.id) and claims["role"] == "user"
    assert claims["exp"] - claims["iat"] == us_settings.jwt_ttl_seconds
    me = await client.get(f"{API}/users/me", headers=account.headers)
    assert me.status_code == 200 and me.json()["data"]["id"] == str(account.id)


async def test_wrong_password_and_unknown_email_look_the_same(
    client: httpx.AsyncClient, register: Register
) -> None:
    account = await register()
    wrong = await client.post(
        f"{API}/auth/login", json={"email": account.email, "password": "not-the-password"}
    )
    unknown = await client.post(
        f"{API}/auth/login", json={"email": unique_email(), "password": "not-the-password"}
    )
    malformed = await client.post(
        f"{API}/auth/login", json={"email": "no-at-sign", "password": "not-the-password"}
    )
    for response in (wrong, unknown, malformed):
        assert response.status_code == 401
        assert response.json()["error"] == "invalid_credentials"
    assert wrong.json() == unknown.json() == malformed.json()


@pytest.mark.parametrize(
    ("make_header", "code"),
    [
        (lambda s, uid: None, "unauthorized"),
        (lambda s, uid: "Basic abc", "unauthorized"),
        (
            lambda s, uid: jwt.encode(
                _claims(uid, iat=int(time.time()) - 7200, exp=int(time.time()) - 3600),
                s.jwt_secret.get_secret_value(),
                algorithm="HS256",
            ),
            "token_expired",
        ),
        (
            lambda s, uid: jwt.encode(
                _claims(uid), "another-secret-that-is-long-enough-32b", algorithm="HS256"
            ),
            "invalid_token",
        ),
        (
            lambda s, uid: f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims(uid))}.",
            "invalid_token",
        ),
        (
            lambda s, uid: jwt.encode(
                _claims(uid, role="superuser"), s.jwt_secret.get_secret_value(), algorithm="HS256"
            ),
            "invalid_token",
        ),
        (lambda s, uid: "not.a.jwt", "invalid_token"),
    ],
    ids=["none", "not-bearer", "expired", "other-key", "alg-none", "bad-role", "garbage"],
)
async def test_bad_tokens_are_401(
    client: httpx.AsyncClient,
    register: Register,
    us_settings: UserServiceSettings,
    make_header: object,
    code: str,
) -> None:
    account = await register()
    token = make_header(us_settings, account.id)  # type: ignore[operator]
    headers = {}
    if token is not None:
        headers["Authorization"] = token if token.startswith("Basic") else f"Bearer {token}"
    for path in ("/users/me", f"/users/{account.id}", f"/users/{account.id}/preferences"):
        response = await client.get(f"{API}{path}", headers=headers)
        assert response.status_code == 401, path
        assert response.json()["error"] == code


async def test_login_is_rate_limited_per_email_and_ip(us_settings: UserServiceSettings) -> None:
    settings = us_settings.model_copy(update={"login_max_attempts": 3})
    async with running(settings) as (_, client):
        email = unique_email()
        created = await client.post(
            f"{API}/users", json={"name": "A", "email": email, "password": PASSWORD}
        )
        assert created.status_code == 201
        bad = {"email": email, "password": "wrong-password"}
        statuses = [
            (await client.post(f"{API}/auth/login", json=bad)).status_code for _ in range(3)
        ]
        assert statuses == [401, 401, 401]
        blocked = await client.post(
            f"{API}/auth/login", json={"email": email, "password": PASSWORD}
        )
        assert blocked.status_code == 429
        assert blocked.json()["error"] == "rate_limited"
        assert 1 <= int(blocked.headers["Retry-After"]) <= settings.login_window_seconds
        # Another email from the same client is not affected.
        other = await client.post(
            f"{API}/auth/login", json={"email": unique_email(), "password": "x"}
        )
        assert other.status_code == 401


async def test_successful_login_resets_the_count(us_settings: UserServiceSettings) -> None:
    settings = us_settings.model_copy(update={"login_max_attempts": 2})
    async with running(settings) as (_, client):
        email = unique_email()
        await client.post(f"{API}/users", json={"name": "A", "email": email, "password": PASSWORD})
        good, bad = (
            {"email": email, "password": PASSWORD},
            {"email": email, "password": "nope-nope"},
        )
        for _ in range(3):
            assert (await client.post(f"{API}/auth/login", json=bad)).status_code == 401
            assert (await client.post(f"{API}/auth/login", json=good)).status_code == 200
