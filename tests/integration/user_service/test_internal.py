"""The internal API the gateway and push worker call: the contact record (one indexed query,
cached in Redis and invalidated on every change) and dead-token removal."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import orjson
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy import event, update

from devtools.stack import free_port
from services.user_service.models import User
from services.user_service.settings import UserServiceSettings
from shared.contacts import CHANGES_CHANNEL
from shared.contracts import Contact
from shared.db import session_scope
from shared.redis import RedisKeys
from tests.conftest import wait_for
from tests.integration.user_service.conftest import API, INTERNAL, Account, Register, running


def contact_key(settings: UserServiceSettings, user_id: uuid.UUID) -> str:
    return RedisKeys(settings.redis_key_prefix)("user_contact", user_id)


async def _contact(
    client: httpx.AsyncClient, headers: dict[str, str], user_id: uuid.UUID
) -> dict[str, Any]:
    response = await client.get(f"{INTERNAL}/users/{user_id}/contact", headers=headers)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


async def test_contact_needs_the_internal_key(
    client: httpx.AsyncClient, register: Register
) -> None:
    account = await register()
    for headers in (
        {},
        {"X-Internal-API-Key": "wrong"},
        {"Authorization": f"Bearer {account.token}"},
    ):
        response = await client.get(f"{INTERNAL}/users/{account.id}/contact", headers=headers)
        assert response.status_code == 401
        assert response.json()["error"] == "invalid_internal_key"
        gone = await client.post(f"{INTERNAL}/devices/remove", json={"token": "x"}, headers=headers)
        assert gone.status_code == 401


async def test_contact_has_the_contract_shape(
    client: httpx.AsyncClient, register: Register, internal_headers: dict[str, str]
) -> None:
    account = await register(push_token="tok-android", locale="de", timezone="Europe/Berlin")
    await client.put(
        f"{API}/users/{account.id}/preferences",
        headers=account.headers,
        json={"email": True, "push": False, "quiet_hours": {"start": "22:30", "end": "06:45"}},
    )
    await client.post(
        f"{API}/users/{account.id}/devices",
        headers=account.headers,
        json={"token": "tok-web", "platform": "web"},
    )
    response = await client.get(f"{INTERNAL}/users/{account.id}/contact", headers=internal_headers)
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body == {
        "success": True,
        "data": {
            "user_id": str(account.id),
            "name": "Ada Lovelace",
            "email": account.email,
            "locale": "de",
            "timezone": "Europe/Berlin",
            "preferences": {
                "email": True,
                "push": False,
                "quiet_hours": {"start": "22:30", "end": "06:45"},
                "categories": {},
            },
            "devices": [
                {"token": "tok-android", "platform": "android"},
                {"token": "tok-web", "platform": "web"},
            ],
        },
        "error": None,
        "message": "ok",
        "meta": None,
    }
    # The contract its readers parse (shared.contracts.Contact) has exactly these fields: a
    # field only one side knows would be dropped or defaulted, and the round trip would differ.
    assert Contact.model_validate(body["data"]).model_dump(mode="json") == body["data"]


async def test_unknown_contact_is_404(
    client: httpx.AsyncClient, internal_headers: dict[str, str]
) -> None:
    response = await client.get(
        f"{INTERNAL}/users/{uuid.uuid4()}/contact", headers=internal_headers
    )
    assert response.status_code == 404
    assert response.json()["error"] == "user_not_found"
    bad = await client.get(f"{INTERNAL}/users/nope/contact", headers=internal_headers)
    assert bad.status_code == 422 and bad.json()["details"][0]["field"] == "user_id"


async def test_contact_miss_is_one_query_and_then_served_from_redis(
    app: FastAPI,
    client: httpx.AsyncClient,
    register: Register,
    internal_headers: dict[str, str],
    us_settings: UserServiceSettings,
    redis_client: Redis,
) -> None:
    account = await register(push_token=f"tok-{uuid.uuid4().hex}")
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    engine = app.state.engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        first = await _contact(client, internal_headers, account.id)
        assert len(statements) == 1, statements
        cached = await redis_client.get(contact_key(us_settings, account.id))
        assert cached is not None and orjson.loads(cached) == first
        assert 0 < await redis_client.ttl(contact_key(us_settings, account.id)) <= 60
        statements.clear()
        assert await _contact(client, internal_headers, account.id) == first
        assert statements == []  # a hit touches no database
    finally:
        event.remove(engine, "before_cursor_execute", count)


async def _assert_invalidated(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    redis_client: Redis,
    key: str,
    user_id: uuid.UUID,
) -> dict[str, Any]:
    assert await redis_client.get(key) is None, "the change left a cached contact behind"
    return await _contact(client, headers, user_id)


async def test_every_change_invalidates_the_cached_contact(
    client: httpx.AsyncClient,
    register: Register,
    internal_headers: dict[str, str],
    us_settings: UserServiceSettings,
    redis_client: Redis,
    admin: Account,
) -> None:
    account = await register()
    key = contact_key(us_settings, account.id)
    users = f"{API}/users/{account.id}"
    h = account.headers

    async def warm() -> None:
        await _contact(client, internal_headers, account.id)
        assert await redis_client.get(key) is not None

    await warm()
    await client.patch(f"{API}/users/me", headers=h, json={"name": "Renamed"})
    contact = await _assert_invalidated(client, internal_headers, redis_client, key, account.id)
    assert contact["name"] == "Renamed"

    await client.patch(users, headers=admin.headers, json={"timezone": "Asia/Tokyo"})
    contact = await _assert_invalidated(client, internal_headers, redis_client, key, account.id)
    assert contact["timezone"] == "Asia/Tokyo"

    await client.put(f"{users}/preferences", headers=h, json={"email": False, "push": True})
    contact = await _assert_invalidated(client, internal_headers, redis_client, key, account.id)
    assert contact["preferences"]["email"] is False

    added = await client.post(
        f"{users}/devices", headers=h, json={"token": "inv-1", "platform": "ios"}
    )
    contact = await _assert_invalidated(client, internal_headers, redis_client, key, account.id)
    assert contact["devices"] == [{"token": "inv-1", "platform": "ios"}]

    await client.delete(f"{users}/devices/{added.json()['data']['id']}", headers=h)
    contact = await _assert_invalidated(client, internal_headers, redis_client, key, account.id)
    assert contact["devices"] == []

    await client.post(f"{users}/devices", headers=h, json={"token": "inv/2:x", "platform": "web"})
    await warm()
    gone = await client.post(
        f"{INTERNAL}/devices/remove", json={"token": "inv/2:x"}, headers=internal_headers
    )
    assert gone.status_code == 200 and gone.json()["data"] == {"removed": True}
    contact = await _assert_invalidated(client, internal_headers, redis_client, key, account.id)
    assert contact["devices"] == []

    await client.delete(users, headers=h)
    assert await redis_client.get(key) is None
    response = await client.get(f"{INTERNAL}/users/{account.id}/contact", headers=internal_headers)
    assert response.status_code == 404


async def test_a_moved_token_invalidates_the_previous_owner(
    client: httpx.AsyncClient,
    register: Register,
    internal_headers: dict[str, str],
) -> None:
    token = f"moving-{uuid.uuid4().hex}"
    alice = await register(push_token=token)
    assert (await _contact(client, internal_headers, alice.id))["devices"] != []
    bob = await register()
    await client.post(
        f"{API}/users/{bob.id}/devices",
        headers=bob.headers,
        json={"token": token, "platform": "android"},
    )
    assert (await _contact(client, internal_headers, alice.id))["devices"] == []


async def test_the_cache_is_really_used(
    app: FastAPI,
    client: httpx.AsyncClient,
    register: Register,
    internal_headers: dict[str, str],
) -> None:
    """A change made behind the service's back stays invisible until the service changes the
    user itself: proof that the contact is served from the cache."""
    account = await register()
    await _contact(client, internal_headers, account.id)
    async with session_scope(app.state.accounts.sessions) as session:
        await session.execute(update(User).where(User.id == account.id).values(name="Sneaky"))
    assert (await _contact(client, internal_headers, account.id))["name"] == "Ada Lovelace"
    await client.patch(f"{API}/users/me", headers=account.headers, json={"locale": "fr"})
    assert (await _contact(client, internal_headers, account.id))["name"] == "Sneaky"


async def test_remove_by_token_is_200_when_already_gone(
    client: httpx.AsyncClient, internal_headers: dict[str, str]
) -> None:
    response = await client.post(
        f"{INTERNAL}/devices/remove",
        json={"token": f"never-existed-{uuid.uuid4().hex}"},
        headers=internal_headers,
    )
    assert response.status_code == 200
    assert response.json()["data"] == {"removed": False}


async def test_without_redis_contact_comes_from_the_database_and_login_works(
    us_settings: UserServiceSettings, internal_headers: dict[str, str]
) -> None:
    dead_redis = us_settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/1"})
    async with running(dead_redis) as (_, client):
        health = await client.get(f"{API}/health")
        assert health.status_code == 503
        assert health.json()["data"]["checks"] == {"db": "up", "redis": "down"}
        email = f"noredis-{uuid.uuid4().hex[:8]}@example.com"
        body = {"name": "A", "email": email, "password": "long-enough-pw"}
        created = await client.post(f"{API}/users", json=body)
        assert created.status_code == 201
        user_id = created.json()["data"]["id"]
        login = await client.post(
            f"{API}/auth/login", json={"email": email, "password": body["password"]}
        )
        assert login.status_code == 200  # the limiter fails open
        contact = await client.get(f"{INTERNAL}/users/{user_id}/contact", headers=internal_headers)
        assert contact.status_code == 200 and contact.json()["data"]["email"] == email


async def test_unsubscribe_turns_one_category_off_idempotently_and_announces_it(
    client: httpx.AsyncClient,
    register: Register,
    internal_headers: dict[str, str],
    us_settings: UserServiceSettings,
    redis_client: Redis,
) -> None:
    account = await register()
    url = f"{INTERNAL}/users/{account.id}/unsubscribe"
    body = {"channel": "email", "category": "marketing"}
    refused = await client.post(
        url, json=body, headers={"Authorization": account.headers["Authorization"]}
    )
    assert refused.status_code == 401

    key = contact_key(us_settings, account.id)
    await _contact(client, internal_headers, account.id)
    assert await redis_client.get(key) is not None
    changes = redis_client.pubsub()
    await changes.subscribe(RedisKeys(us_settings.redis_key_prefix)(CHANGES_CHANNEL))
    try:
        first = await client.post(url, json=body, headers=internal_headers)
        assert first.status_code == 200, first.text
        assert first.json()["data"]["categories"] == {"marketing": {"email": False}}

        async def announced() -> bool:
            message = await changes.get_message(ignore_subscribe_messages=True, timeout=0.5)
            return bool(message and message["data"] == str(account.id).encode())

        await wait_for(announced, timeout=10)
    finally:
        await changes.aclose()
    contact = await _assert_invalidated(client, internal_headers, redis_client, key, account.id)
    assert contact["preferences"]["categories"] == {"marketing": {"email": False}}
    assert contact["preferences"]["email"] is True  # only the category, not the channel

    again = await client.post(url, json=body, headers=internal_headers)
    assert again.status_code == 200 and again.json()["data"] == first.json()["data"]
    push = await client.post(url, json={**body, "channel": "push"}, headers=internal_headers)
    assert push.json()["data"]["categories"] == {"marketing": {"email": False, "push": False}}

    # A client that predates categories keeps them; naming them sets them (true is back on).
    prefs = f"{API}/users/{account.id}/preferences"
    kept = await client.put(prefs, headers=account.headers, json={"email": True, "push": True})
    assert kept.json()["data"]["categories"] == {"marketing": {"email": False, "push": False}}
    back = await client.put(
        prefs,
        headers=account.headers,
        json={"email": True, "push": True, "categories": {"marketing": {"email": True}}},
    )
    assert back.json()["data"]["categories"] == {"marketing": {"email": True}}


async def test_unsubscribe_refuses_transactional_and_unknown_users(
    client: httpx.AsyncClient, register: Register, internal_headers: dict[str, str]
) -> None:
    account = await register()
    url = f"{INTERNAL}/users/{account.id}/unsubscribe"
    for body, field in (
        ({"channel": "email", "category": "transactional"}, "category"),
        ({"channel": "sms", "category": "marketing"}, "channel"),
    ):
        response = await client.post(url, json=body, headers=internal_headers)
        assert response.status_code == 422
        assert response.json()["details"][0]["field"] == field
    prefs = f"{API}/users/{account.id}/preferences"
    no_switch = await client.put(
        prefs,
        headers=account.headers,
        json={"email": True, "push": True, "categories": {"transactional": {"email": False}}},
    )
    assert no_switch.status_code == 422
    unknown = await client.post(
        f"{INTERNAL}/users/{uuid.uuid4()}/unsubscribe",
        json={"channel": "email", "category": "marketing"},
        headers=internal_headers,
    )
    assert unknown.status_code == 404 and unknown.json()["error"] == "user_not_found"
