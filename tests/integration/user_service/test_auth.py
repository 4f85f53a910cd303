"""Login, refresh, logout and token checks: one answer for every credential failure, rotating
refresh tokens, and every bad access token refused (none, expired, another key, `alg: none`,
algorithm confusion, a revoked version)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI
from sqlalchemy import select

from services.user_service.models import RefreshToken
from services.user_service.settings import UserServiceSettings
from services.user_service.tokens import load_signing_keys
from shared.db import session_scope
from shared.token_keys import key_id, public_key_pem
from tests.integration.user_service.conftest import (
    API,
    PASSWORD,
    Register,
    running,
    unique_email,
)


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _claims(user_id: uuid.UUID, **overrides: object) -> dict[str, object]:
    now = int(time.time())
    return {
        "sub": str(user_id),
        "role": "user",
        "ver": 0,
        "iat": now,
        "exp": now + 600,
        **overrides,
    }


async def test_login_issues_a_verifiable_token_pair(
    client: httpx.AsyncClient, register: Register, us_settings: UserServiceSettings
) -> None:
    account = await register()
    response = await client.post(
        f"{API}/auth/login", json={"email": account.email.upper(), "password": PASSWORD}
    )
    assert response.status_code == 200
    data = response.json()["data"]
    assert set(data) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert data["token_type"] == "bearer"
    assert data["expires_in"] == us_settings.access_token_ttl_seconds == 900
    jwks = (await client.get("/.well-known/jwks.json")).json()
    header = jwt.get_unverified_header(data["access_token"])
    assert header["alg"] == "EdDSA" and header["kid"] in {k["kid"] for k in jwks["keys"]}
    key = jwt.PyJWK.from_dict(next(k for k in jwks["keys"] if k["kid"] == header["kid"]))
    claims = jwt.decode(data["access_token"], key.key, algorithms=["EdDSA"])
    assert claims["sub"] == str(account.id) and claims["role"] == "user"
    assert claims["ver"] == 0 and claims["exp"] - claims["iat"] == 900
    me = await client.get(f"{API}/users/me", headers=account.headers)
    assert me.status_code == 200 and me.json()["data"]["id"] == str(account.id)


async def test_jwks_publishes_the_current_and_previous_keys(
    us_settings: UserServiceSettings, tmp_path: Path
) -> None:
    old = Ed25519PrivateKey.generate()
    bundle = tmp_path / "previous.pem"
    bundle.write_bytes(public_key_pem(old.public_key()))
    settings = us_settings.model_copy(update={"jwt_previous_public_keys_file": str(bundle)})
    async with running(settings) as (_, client):
        response = await client.get("/.well-known/jwks.json")
        assert response.status_code == 200
        assert response.headers["cache-control"].startswith("public")
        kids = {k["kid"] for k in response.json()["keys"]}
        current = load_signing_keys(settings).kid
        assert kids == {current, key_id(old.public_key())}
        # A token signed with the previous key is still accepted after the rotation.
        account_email = unique_email()
        created = await client.post(
            f"{API}/users", json={"name": "A", "email": account_email, "password": PASSWORD}
        )
        user_id = created.json()["data"]["id"]
        token = jwt.encode(
            _claims(uuid.UUID(user_id)),
            old,
            algorithm="EdDSA",
            headers={"kid": key_id(old.public_key())},
        )
        me = await client.get(f"{API}/users/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 200


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


MakeToken = Callable[[UserServiceSettings, uuid.UUID], str | None]


def _signed(settings: UserServiceSettings, claims: dict[str, object]) -> str:
    keys = load_signing_keys(settings)
    return jwt.encode(claims, keys.private_key, algorithm="EdDSA", headers={"kid": keys.kid})


def _other_key(_: UserServiceSettings, uid: uuid.UUID) -> str:
    key = Ed25519PrivateKey.generate()
    return jwt.encode(
        _claims(uid), key, algorithm="EdDSA", headers={"kid": key_id(key.public_key())}
    )


def _other_key_our_kid(settings: UserServiceSettings, uid: uuid.UUID) -> str:
    kid = load_signing_keys(settings).kid
    return jwt.encode(
        _claims(uid), Ed25519PrivateKey.generate(), algorithm="EdDSA", headers={"kid": kid}
    )


def _hs256_with_public_key(settings: UserServiceSettings, uid: uuid.UUID) -> str:
    """Algorithm confusion: an HMAC keyed with the (public) verification key."""
    keys = load_signing_keys(settings)
    public = public_key_pem(keys.private_key.public_key())
    header = _b64({"alg": "HS256", "typ": "JWT", "kid": keys.kid})
    payload = _b64(_claims(uid))
    signature = hmac.new(public, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


@pytest.mark.parametrize(
    ("make_token", "code"),
    [
        (lambda s, uid: None, "unauthorized"),
        (lambda s, uid: "Basic abc", "unauthorized"),
        (
            lambda s, uid: _signed(
                s, _claims(uid, iat=int(time.time()) - 7200, exp=int(time.time()) - 3600)
            ),
            "token_expired",
        ),
        (_other_key, "invalid_token"),
        (_other_key_our_kid, "invalid_token"),
        (_hs256_with_public_key, "invalid_token"),
        (
            lambda s, uid: f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims(uid))}.",
            "invalid_token",
        ),
        (lambda s, uid: _signed(s, _claims(uid, role="superuser")), "invalid_token"),
        (lambda s, uid: _signed(s, _claims(uid, ver="0")), "invalid_token"),
        (
            lambda s, uid: _signed(s, {k: v for k, v in _claims(uid).items() if k != "ver"}),
            "invalid_token",
        ),
        (lambda s, uid: _signed(s, _claims(uid, ver=1)), "token_revoked"),
        (lambda s, uid: _signed(s, _claims(uuid.uuid4())), "token_revoked"),
        (lambda s, uid: "not.a.jwt", "invalid_token"),
    ],
    ids=[
        "none",
        "not-bearer",
        "expired",
        "other-key",
        "other-key-our-kid",
        "hs256-confusion",
        "alg-none",
        "bad-role",
        "ver-not-int",
        "no-ver",
        "stale-ver",
        "no-such-user",
        "garbage",
    ],
)
async def test_bad_tokens_are_401(
    client: httpx.AsyncClient,
    register: Register,
    us_settings: UserServiceSettings,
    make_token: MakeToken,
    code: str,
) -> None:
    account = await register()
    token = make_token(us_settings, account.id)
    headers = {}
    if token is not None:
        headers["Authorization"] = token if token.startswith("Basic") else f"Bearer {token}"
    for path in ("/users/me", f"/users/{account.id}", f"/users/{account.id}/preferences"):
        response = await client.get(f"{API}{path}", headers=headers)
        assert response.status_code == 401, path
        assert response.json()["error"] == code


async def test_refresh_rotates_and_reuse_revokes_the_session(
    client: httpx.AsyncClient, register: Register
) -> None:
    account = await register()
    first = account.refresh_token
    rotated = await client.post(f"{API}/auth/refresh", json={"refresh_token": first})
    assert rotated.status_code == 200, rotated.text
    pair = rotated.json()["data"]
    assert pair["refresh_token"] != first and pair["access_token"]
    me = await client.get(
        f"{API}/users/me", headers={"Authorization": f"Bearer {pair['access_token']}"}
    )
    assert me.status_code == 200
    # The first token again: someone holds a copy, so the whole session ends.
    reused = await client.post(f"{API}/auth/refresh", json={"refresh_token": first})
    assert reused.status_code == 401 and reused.json()["error"] == "refresh_token_reused"
    after = await client.post(f"{API}/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert after.status_code == 401 and after.json()["error"] == "invalid_refresh_token"
    # Another session of the same user is untouched.
    other = await client.post(
        f"{API}/auth/login", json={"email": account.email, "password": PASSWORD}
    )
    refreshed = await client.post(
        f"{API}/auth/refresh", json={"refresh_token": other.json()["data"]["refresh_token"]}
    )
    assert refreshed.status_code == 200


async def test_logout_ends_the_session(client: httpx.AsyncClient, register: Register) -> None:
    account = await register()
    out = await client.post(f"{API}/auth/logout", json={"refresh_token": account.refresh_token})
    assert out.status_code == 200 and out.json()["data"] is None
    refused = await client.post(
        f"{API}/auth/refresh", json={"refresh_token": account.refresh_token}
    )
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_refresh_token"
    unknown = await client.post(f"{API}/auth/logout", json={"refresh_token": "never-issued"})
    assert unknown.status_code == 200


async def test_an_unknown_refresh_token_is_401(client: httpx.AsyncClient) -> None:
    response = await client.post(f"{API}/auth/refresh", json={"refresh_token": "made-up"})
    assert response.status_code == 401 and response.json()["error"] == "invalid_refresh_token"


async def test_refresh_tokens_are_stored_hashed(
    app: FastAPI, client: httpx.AsyncClient, register: Register
) -> None:
    account = await register()
    async with session_scope(app.state.accounts.sessions) as session:
        hashes = (
            await session.scalars(
                select(RefreshToken.token_hash).where(RefreshToken.user_id == account.id)
            )
        ).all()
    assert hashes and account.refresh_token.encode() not in hashes
    assert all(len(h) == 32 for h in hashes)
