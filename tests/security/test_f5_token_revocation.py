"""F5: tokens survived a password change and an account deletion: an old token edited and
deleted the account, and a deleted user's token still worked on the template service.

Now every access token carries its user's token version, checked on each request by every
service; a password change, a deletion or an admin's revoke ends every token at once (the
template service within `TOKEN_VERSION_CACHE_SECONDS`), and only the user service's private
key can make a token, verified through its JWKS with rotation by `kid`.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from redis.asyncio import Redis

from devtools.stack import free_port
from services.template_service.app import create_app as create_template_service
from services.user_service.settings import user_service_settings
from services.user_service.tokens import SigningKeys, issue_access_token
from shared.settings import Settings
from shared.token_keys import private_key_pem, public_key_pem
from shared.token_versions import TokenVersionStore
from tests.conftest import wait_for
from tests.identity import PASSWORD, bearer, create_account, mint_token
from tests.security.conftest import API, Session, register, user_service

TEMPLATES = "/api/v1/templates"


def _refused_with(
    code: str, client: httpx.AsyncClient, path: str, token: str
) -> Callable[[], Awaitable[bool]]:
    """A condition for `wait_for`: the token is refused with `code`."""

    async def refused() -> bool:
        response = await client.get(path, headers=bearer(token))
        return response.status_code == 401 and response.json()["error"] == code

    return refused


async def _works_everywhere(
    users: httpx.AsyncClient, templates: httpx.AsyncClient, session: Session
) -> None:
    assert (await users.get(f"{API}/users/me", headers=session.headers)).status_code == 200
    assert (await templates.get(TEMPLATES, headers=session.headers)).status_code == 200


async def test_a_password_change_ends_every_token_everywhere(
    users: httpx.AsyncClient, templates: httpx.AsyncClient
) -> None:
    session = await register(users)
    await _works_everywhere(users, templates, session)
    changed = await users.patch(
        f"{API}/users/me",
        headers=session.headers,
        json={"password": "a-brand-new-passphrase", "current_password": PASSWORD},
    )
    assert changed.status_code == 200
    # The exploit: the old token edits, then deletes, the account.
    edit = await users.patch(f"{API}/users/me", headers=session.headers, json={"name": "Mallory"})
    delete = await users.delete(f"{API}/users/{session.id}", headers=session.headers)
    for response in (edit, delete):
        assert response.status_code == 401 and response.json()["error"] == "token_revoked"
    await wait_for(
        _refused_with("token_revoked", templates, TEMPLATES, session.access_token), timeout=5
    )
    refresh = await users.post(f"{API}/auth/refresh", json={"refresh_token": session.refresh_token})
    assert refresh.status_code == 401 and refresh.json()["error"] == "invalid_refresh_token"
    fresh = await users.post(
        f"{API}/auth/login", json={"email": session.email, "password": "a-brand-new-passphrase"}
    )
    assert fresh.status_code == 200
    me = await users.get(f"{API}/users/me", headers=bearer(fresh.json()["data"]["access_token"]))
    assert me.status_code == 200 and me.json()["data"]["name"] != "Mallory"


async def test_a_deleted_users_token_is_refused_everywhere(
    users: httpx.AsyncClient, templates: httpx.AsyncClient
) -> None:
    session = await register(users)
    await _works_everywhere(users, templates, session)
    deleted = await users.delete(f"{API}/users/{session.id}", headers=session.headers)
    assert deleted.status_code == 200
    again = await users.get(f"{API}/users/me", headers=session.headers)
    assert again.status_code == 401 and again.json()["error"] == "token_revoked"
    await wait_for(
        _refused_with("token_revoked", templates, TEMPLATES, session.access_token), timeout=5
    )


async def test_an_admin_revokes_every_token_of_a_user(
    users: httpx.AsyncClient, templates: httpx.AsyncClient, base_settings: Settings
) -> None:
    victim, bystander = await register(users), await register(users)
    admin_id = await create_account(base_settings, role="admin")
    admin = bearer(mint_token(base_settings, admin_id, "admin"))
    # Nobody but an admin (or the user) may do it.
    denied = await users.post(f"{API}/users/{victim.id}/revoke-tokens", headers=bystander.headers)
    assert denied.status_code == 403
    revoked = await users.post(f"{API}/users/{victim.id}/revoke-tokens", headers=admin)
    assert revoked.status_code == 200
    me = await users.get(f"{API}/users/me", headers=victim.headers)
    assert me.status_code == 401 and me.json()["error"] == "token_revoked"
    await wait_for(
        _refused_with("token_revoked", templates, TEMPLATES, victim.access_token), timeout=5
    )
    refresh = await users.post(f"{API}/auth/refresh", json={"refresh_token": victim.refresh_token})
    assert refresh.status_code == 401
    await _works_everywhere(users, templates, bystander)
    unknown = await users.post(f"{API}/users/{uuid.uuid4()}/revoke-tokens", headers=admin)
    assert unknown.status_code == 404


async def test_without_the_redis_key_the_user_service_decides(
    users: httpx.AsyncClient,
    templates: httpx.AsyncClient,
    base_settings: Settings,
    redis_client: Redis,
) -> None:
    """Redis is a cache: with the key gone, the template service asks the user service."""
    session = await register(users)
    store = TokenVersionStore(redis_client, base_settings.redis_key_prefix)
    await redis_client.delete(store.key(session.id))
    assert (await templates.get(TEMPLATES, headers=session.headers)).status_code == 200
    assert await store.get(session.id) == (True, 0)  # written back by the user service
    await users.post(f"{API}/users/{session.id}/revoke-tokens", headers=session.headers)
    await redis_client.delete(store.key(session.id))  # as if the announcement were lost
    await wait_for(
        _refused_with("token_revoked", templates, TEMPLATES, session.access_token), timeout=5
    )


async def test_only_the_user_services_key_makes_a_token(
    users: httpx.AsyncClient, templates: httpx.AsyncClient, base_settings: Settings
) -> None:
    session = await register(users)
    real_kid = jwt.get_unverified_header(session.access_token)["kid"]
    claims = jwt.decode(session.access_token, options={"verify_signature": False})
    forged = jwt.encode(
        {**claims, "role": "admin"},
        Ed25519PrivateKey.generate(),
        algorithm="EdDSA",
        headers={"kid": real_kid},
    )
    for client, path in ((templates, TEMPLATES), (users, f"{API}/users")):
        response = await client.get(path, headers=bearer(forged))
        assert response.status_code == 401 and response.json()["error"] == "invalid_token"


async def test_signing_keys_rotate_by_kid(base_settings: Settings, tmp_path: Path) -> None:
    """The user service moves to a new key, keeping the old public key published for a while;
    the template service follows by `kid` without a restart."""
    old, new = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    old_file, new_file, previous = (tmp_path / n for n in ("old.pem", "new.pem", "prev.pem"))
    old_file.write_bytes(private_key_pem(old))
    new_file.write_bytes(private_key_pem(new))
    previous.write_bytes(public_key_pem(old.public_key()))
    port = free_port()
    verifier_settings = base_settings.model_copy(
        update={
            "user_service_url": f"http://127.0.0.1:{port}",
            "jwks_cache_seconds": 0.5,
            "jwks_refetch_min_seconds": 0.0,
            # A user service just started in a thread of a busy machine may answer slowly.
            "http_timeout_seconds": 10.0,
        }
    )
    account = await create_account(base_settings)
    signer = user_service_settings(base_settings)

    def token(key: Ed25519PrivateKey) -> str:
        issued, _ = issue_access_token(
            SigningKeys(key), signer, user_id=account, role="user", version=0
        )
        return issued

    def serving(key_file: Path, previous_keys: Path | None = None) -> AbstractContextManager[str]:
        return user_service(
            base_settings,
            port=port,
            redis_key_prefix=base_settings.redis_key_prefix,
            jwt_private_key_file=str(key_file),
            jwt_previous_public_keys_file=str(previous_keys) if previous_keys else None,
        )

    app = create_template_service(verifier_settings)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://test") as templates,
    ):
        with serving(old_file):
            assert (await templates.get(TEMPLATES, headers=bearer(token(old)))).status_code == 200
        with serving(new_file, previous):
            # A new kid is fetched at once; the old one is still published and accepted.
            assert (await templates.get(TEMPLATES, headers=bearer(token(new)))).status_code == 200
            assert (await templates.get(TEMPLATES, headers=bearer(token(old)))).status_code == 200
        with serving(new_file):
            # The old key retired: refused once the cached key set expires.
            await wait_for(_refused_with("invalid_token", templates, TEMPLATES, token(old)))
            assert (await templates.get(TEMPLATES, headers=bearer(token(new)))).status_code == 200
