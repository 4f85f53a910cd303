"""F6: posting another user's device token moved it silently, 200 versus 201 told whether a
token was registered, and a user could hold any number of devices (50 tokens of 4 KB made one
send a 200 KB message).

Now a token held by someone else moves exactly as a new registration answers, the move is a
security event in the log (a fingerprint, never the token), and a user keeps at most
`MAX_DEVICES_PER_USER` devices, the oldest dropped.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime

import httpx
import pytest

from shared.logging import fingerprint
from shared.settings import Settings
from tests.security.conftest import API, Session, register, user_service


def _shape(response: httpx.Response) -> tuple[int, str, list[str], str]:
    """What a caller can compare between two answers (ids and times always differ)."""
    body = response.json()
    return response.status_code, body["message"], sorted(body["data"]), body["data"]["platform"]


async def _add(client: httpx.AsyncClient, who: Session, token: str) -> httpx.Response:
    return await client.post(
        f"{API}/users/{who.id}/devices",
        headers=who.headers,
        json={"token": token, "platform": "android"},
    )


async def _tokens(client: httpx.AsyncClient, who: Session) -> list[str]:
    response = await client.get(
        f"{API}/users/{who.id}/devices", headers=who.headers, params={"limit": 100}
    )
    return [d["token"] for d in response.json()["data"]]


async def test_taking_over_a_token_answers_like_a_new_registration(
    users: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    alice, mallory = await register(users), await register(users)
    alices_token = f"fcm-{uuid.uuid4().hex}" * 4
    assert (await _add(users, alice, alices_token)).status_code == 201
    fresh = await _add(users, mallory, f"fcm-{uuid.uuid4().hex}")
    with caplog.at_level(logging.INFO):
        taken = await _add(users, mallory, alices_token)
    assert _shape(taken) == _shape(fresh)
    assert taken.json()["data"]["id"] != fresh.json()["data"]["id"]
    created = datetime.fromisoformat(taken.json()["data"]["created_at"])
    assert created >= datetime.fromisoformat(fresh.json()["data"]["created_at"])
    # The install changed hands: the token is Mallory's now, and gone from Alice.
    assert alices_token in await _tokens(users, mallory)
    assert alices_token not in await _tokens(users, alice)
    moves = [r for r in caplog.records if getattr(r, "event", None) == "device_token_moved"]
    assert len(moves) == 1
    move = moves[0]
    assert move.levelno == logging.WARNING
    assert move.token_fingerprint == fingerprint(alices_token)  # type: ignore[attr-defined]
    assert (move.from_user_id, move.to_user_id) == (str(alice.id), str(mallory.id))  # type: ignore[attr-defined]
    assert all(alices_token not in r.getMessage() for r in caplog.records)
    assert all(alices_token not in str(r.__dict__) for r in caplog.records)


async def test_registering_your_own_token_again_is_the_only_200(
    users: httpx.AsyncClient,
) -> None:
    owner = await register(users)
    token = f"fcm-{uuid.uuid4().hex}"
    first, again = await _add(users, owner, token), await _add(users, owner, token)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["data"]["id"] == again.json()["data"]["id"]


async def test_a_user_keeps_at_most_the_newest_devices(base_settings: Settings) -> None:
    with user_service(base_settings, max_devices_per_user=3) as url:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            owner = await register(client)
            added = [f"fcm-{n}-{uuid.uuid4().hex}" for n in range(5)]
            for token in added:
                assert (await _add(client, owner, token)).status_code == 201
            kept = await _tokens(client, owner)
    assert kept == added[-3:]


async def test_the_default_cap_is_twenty(users: httpx.AsyncClient) -> None:
    owner = await register(users)
    added = [f"fcm-{n}-{uuid.uuid4().hex}" for n in range(22)]
    for token in added:
        await _add(users, owner, token)
    assert await _tokens(users, owner) == added[-20:]
