"""No secret or token in any log line, at any level (F7: a dead device token appeared whole in
the push worker's log, in a library's INFO line of the delete URL).

The whole stack runs at DEBUG. One flow touches every secret it can: a registration with a
password and a device token, logins (JWTs), a template saved and previewed by the admin, an
email and a push sent with the API key, the device token reported dead by FCM and removed by
the push worker. Then every log file of every process is searched for every value used.
"""

from __future__ import annotations

import pathlib
import uuid
from typing import Any

import httpx

from shared.settings import Settings
from tests.conftest import wait_for
from tests.security.conftest import SecurityStack


async def _status(client: httpx.AsyncClient, api_key: str, ref: str) -> str:
    response = await client.get(f"/v1/notifications/{ref}/status", headers={"X-API-Key": api_key})
    assert response.status_code == 200, response.text
    status: str = response.json()["data"]["status"]
    return status


async def test_no_secret_reaches_any_log(security_stack: SecurityStack) -> None:
    settings = security_stack.settings
    api_key = settings.demo_api_key.get_secret_value()
    internal_key = settings.internal_api_key.get_secret_value()
    device_token = f"sec-device-{uuid.uuid4().hex}{uuid.uuid4().hex}"
    body_text = f"Bodytext{uuid.uuid4().hex}"
    user_id, email, password = await security_stack.register(push_token=device_token)
    user_login = await security_stack.login(email, password)
    admin_password = settings.demo_admin_password.get_secret_value()
    admin_login = await security_stack.login(settings.demo_admin_email, admin_password)
    admin = {"Authorization": f"Bearer {admin_login['access_token']}"}

    async with httpx.AsyncClient(
        base_url=security_stack.url("template_service"), timeout=10
    ) as templates:
        code = f"sec-{uuid.uuid4().hex[:12]}"
        created = await templates.post(
            "/api/v1/templates",
            json={
                "code": code,
                "channel": "email",
                "name": "Secret test",
                "subject": "Hello {{ name }}",
                "text_body": "{{ name }} says {{ line }}",
                "html_body": '<p>{{ line }}</p><a href="{{ link }}">go</a>',
            },
            headers=admin,
        )
        assert created.status_code == 201, created.text
        variables = {"name": "Ada", "line": body_text, "link": "https://example.com/x"}
        preview = await templates.post(
            "/api/v1/templates/preview",
            json={
                "channel": "email",
                "subject": "s",
                "text_body": "{{ line }}",
                "variables": variables,
            },
            headers=admin,
        )
        assert preview.status_code == 200, preview.text
        mine = await templates.get(
            f"/api/v1/templates/{code}",
            headers={"Authorization": f"Bearer {user_login['access_token']}"},
        )
        assert mine.status_code == 200, mine.text

    async with httpx.AsyncClient(base_url=settings.fcm_base_url, timeout=10) as fcm:
        fault = await fcm.post(
            "/emulator/faults", json={"token": device_token, "fault": "unregistered"}
        )
        assert fault.status_code == 200, fault.text

    async with httpx.AsyncClient(base_url=security_stack.url("api_gateway"), timeout=10) as gw:
        sent: dict[str, str] = {}
        for channel, template, auth in (
            ("email", code, {"Authorization": f"Bearer {api_key}"}),
            ("push", "welcome", {"X-API-Key": api_key}),
        ):
            response = await gw.post(
                "/v1/notifications/send",
                json={
                    "notification_type": channel,
                    "user_id": user_id,
                    "template_code": template,
                    "variables": variables,
                },
                headers=auth,
            )
            assert response.status_code == 202, response.text
            sent[channel] = response.json()["data"]["notification_id"]

        async def settled() -> bool:
            email_status = await _status(gw, api_key, sent["email"])
            push_status = await _status(gw, api_key, sent["push"])
            return email_status == "delivered" and push_status == "failed"

        await wait_for(settled, timeout=30)

    async with httpx.AsyncClient(base_url=security_stack.url("user_service"), timeout=10) as us:

        async def device_removed() -> bool:
            response = await us.get(
                f"/internal/v1/users/{user_id}/contact",
                headers={"X-Internal-API-Key": internal_key},
            )
            devices: list[Any] = response.json()["data"]["devices"]
            return devices == []

        await wait_for(device_removed, timeout=15)

    secrets = {
        "API key": api_key,
        "internal key": internal_key,
        "signing key": _signing_key_line(settings),
        "user password": password,
        "admin password": admin_password,
        "device token": device_token,
        "email body text": body_text,
    }
    for label, login in (("user", user_login), ("admin", admin_login)):
        for name, value in login.items():
            if isinstance(value, str) and len(value) >= 16:  # access, refresh tokens
                secrets[f"{label} login {name}"] = value

    logs = {path.name: path.read_text() for path in sorted(security_stack.stack.log_dir.iterdir())}
    assert set(logs) >= {f"{s}.log" for s in ("api_gateway", "user_service", "push_service")}
    assert '"level": "DEBUG"' in "".join(logs.values())  # the level took effect
    # The removal happened, and its log line names the token by fingerprint only.
    assert "removed dead device token" in logs["push_service.log"]
    found = [
        f"{label} in {name}"
        for name, text in logs.items()
        for label, value in secrets.items()
        if value in text
    ]
    assert not found, found


def _signing_key_line(settings: Settings) -> str:
    """The body of the user service's signing key (the PEM's base64 line)."""
    return pathlib.Path(str(settings.jwt_private_key_file)).read_text().splitlines()[1]
