"""The FCM stand-in speaks FCM HTTP v1: OAuth2 JWT-bearer grant, messages:send, FCM errors.

It runs in-process under uvicorn on a free port; the token is obtained with google-auth's own
service-account credentials (through the push service's token source), so the stand-in is
checked against the real client library, not against our idea of it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from devtools.fcm_standin import create_app, serve_in_process
from devtools.stack import free_port
from services.push_service.credentials import make_service_account
from services.push_service.fcm import AccessTokenSource

PROJECT = "standin-test"


@dataclass
class Standin:
    url: str
    account: dict[str, str]
    client: httpx.AsyncClient

    def send_url(self, project: str = PROJECT) -> str:
        return f"{self.url}/v1/projects/{project}/messages:send"

    async def access_token(self) -> str:
        source = AccessTokenSource(self.account, timeout_seconds=5)
        try:
            return await source.token()
        finally:
            source.close()

    async def send(
        self, token: str | None, message: dict[str, Any], **extra: Any
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return await self.client.post(
            self.send_url(**extra), json={"message": message}, headers=headers
        )


@pytest.fixture
async def standin() -> AsyncIterator[Standin]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    account = make_service_account(project_id=PROJECT, token_uri=f"{url}/token")
    async with (
        serve_in_process(create_app([account]), port=port),
        httpx.AsyncClient(base_url=url, timeout=10) as client,
    ):
        yield Standin(url, account, client)


def _fcm_error_code(response: httpx.Response) -> str | None:
    for detail in response.json()["error"].get("details", []):
        if detail["@type"].endswith("FcmError"):
            return str(detail["errorCode"])
    return None


async def test_token_grant_then_send_is_kept(standin: Standin) -> None:
    token = await standin.access_token()
    message = {"notification": {"title": "Hi", "body": "There"}, "data": {"link": "x"}}
    response = await standin.send(token, {**message, "token": "device-1"})
    assert response.status_code == 200
    name = response.json()["name"]
    assert name.startswith(f"projects/{PROJECT}/messages/")

    kept = (await standin.client.get("/emulator/messages")).json()["data"]
    assert [(m["name"], m["token"], m["message"]["notification"]["title"]) for m in kept] == [
        (name, "device-1", "Hi")
    ]
    stats = (await standin.client.get("/emulator/stats")).json()["data"]
    assert stats["token_requests"] == 1


async def test_assertion_signed_by_another_key_is_refused(standin: Standin) -> None:
    impostor = make_service_account(project_id=PROJECT, token_uri=standin.account["token_uri"])
    impostor["client_email"] = standin.account["client_email"]
    source = AccessTokenSource(impostor, timeout_seconds=5)
    try:
        with pytest.raises(Exception, match="invalid_grant"):
            await source.token()
    finally:
        source.close()


async def test_send_without_a_valid_bearer_is_unauthenticated(standin: Standin) -> None:
    for token in (None, "ya29.made-up"):
        response = await standin.send(token, {"token": "device-1"})
        assert response.status_code == 401
        assert response.json()["error"]["status"] == "UNAUTHENTICATED"


async def test_wrong_project_is_permission_denied(standin: Standin) -> None:
    token = await standin.access_token()
    response = await standin.send(token, {"token": "device-1"}, project="someone-else")
    assert response.status_code == 403
    assert response.json()["error"]["status"] == "PERMISSION_DENIED"


async def test_malformed_message_is_invalid_argument_naming_the_field(standin: Standin) -> None:
    token = await standin.access_token()
    response = await standin.send(token, {"token": "device-1", "data": {"count": 3}})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT"
    assert _fcm_error_code(response) == "INVALID_ARGUMENT"
    fields = [v["field"] for d in error["details"] for v in d.get("fieldViolations", [])]
    assert fields == ["message.data.count"]

    both = await standin.send(token, {"token": "d", "topic": "news"})
    assert both.status_code == 400


async def test_faults_per_token(standin: Standin) -> None:
    token = await standin.access_token()
    faults = [
        {"token": "dead", "fault": "unregistered"},
        {"token": "bad", "fault": "invalid_argument"},
        {"token": "busy", "fault": "unavailable", "seconds": 7, "times": 1},
        {"token": "limited", "fault": "quota", "seconds": 3},
    ]
    for fault in faults:
        assert (await standin.client.post("/emulator/faults", json=fault)).status_code == 200

    dead = await standin.send(token, {"token": "dead"})
    assert (dead.status_code, _fcm_error_code(dead)) == (404, "UNREGISTERED")
    bad = await standin.send(token, {"token": "bad"})
    assert (bad.status_code, _fcm_error_code(bad)) == (400, "INVALID_ARGUMENT")
    busy = await standin.send(token, {"token": "busy"})
    assert (busy.status_code, busy.headers["retry-after"]) == (503, "7")
    assert (await standin.send(token, {"token": "busy"})).status_code == 200  # times=1 used up
    limited = await standin.send(token, {"token": "limited"})
    assert (limited.status_code, _fcm_error_code(limited), limited.headers["retry-after"]) == (
        429,
        "QUOTA_EXCEEDED",
        "3",
    )
    outcomes = (await standin.client.get("/emulator/requests")).json()["data"]
    assert [r["outcome"] for r in outcomes] == ["fault", "fault", "fault", "ok", "fault"]


async def test_slow_fault_answers_late_then_succeeds(standin: Standin) -> None:
    token = await standin.access_token()
    await standin.client.post(
        "/emulator/faults", json={"token": "slow", "fault": "slow", "seconds": 0.3}
    )
    started = time.monotonic()
    response = await standin.send(token, {"token": "slow"})
    assert response.status_code == 200
    assert time.monotonic() - started >= 0.3


async def test_clearing_forgets_messages_and_faults(standin: Standin) -> None:
    token = await standin.access_token()
    await standin.client.post("/emulator/faults", json={"token": "x", "fault": "unregistered"})
    await standin.send(token, {"token": "y"})
    assert (await standin.client.delete("/emulator/messages")).status_code == 200
    assert (await standin.client.get("/emulator/messages")).json()["data"] == []
    assert (await standin.client.get("/emulator/faults")).json()["data"] == []
    health = await standin.client.get("/health")
    assert health.json()["data"]["status"] == "ok"
