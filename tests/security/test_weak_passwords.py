"""Weak passwords (`password`, eight spaces) were accepted at registration.

Now a password must score at least 3 of 4 on zxcvbn (knowing the user's name and email), or
the answer is 422 `weak_password` saying why; the limits are in the OpenAPI contract, and the
demo seed's passwords pass the same check.
"""

from __future__ import annotations

import httpx
import pytest

from services.user_service.passwords import weakness
from shared.settings import DEMO_DEFAULTS
from tests.identity import PASSWORD
from tests.security.conftest import API, register, unique_email


@pytest.mark.parametrize("password", ["password", "        ", "12345678", "qwertyuiop123"])
async def test_weak_passwords_are_refused_with_the_reason(
    users: httpx.AsyncClient, password: str
) -> None:
    response = await users.post(
        f"{API}/users", json={"name": "Weak", "email": unique_email(), "password": password}
    )
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "weak_password"
    (detail,) = body["details"]
    assert detail["field"] == "password" and detail["message"].startswith("too easy to guess")


async def test_the_users_own_email_is_no_password(users: httpx.AsyncClient) -> None:
    email = unique_email()
    response = await users.post(
        f"{API}/users", json={"name": "A", "email": email, "password": email}
    )
    assert response.status_code == 422 and response.json()["error"] == "weak_password"


async def test_a_new_password_is_checked_too(users: httpx.AsyncClient) -> None:
    session = await register(users)
    response = await users.patch(
        f"{API}/users/me",
        headers=session.headers,
        json={"password": "password1", "current_password": PASSWORD},
    )
    assert response.status_code == 422 and response.json()["error"] == "weak_password"


async def test_the_contract_states_the_limits(users: httpx.AsyncClient) -> None:
    spec = (await users.get("/api/openapi.json")).json()
    password = spec["components"]["schemas"]["UserCreate"]["properties"]["password"]
    assert (password["minLength"], password["maxLength"]) == (8, 256)
    assert "zxcvbn" in password["description"]
    assert "weak_password" in spec["paths"]["/api/v1/users"]["post"]["description"]


def test_the_demo_passwords_pass_the_check() -> None:
    for who, name in (("admin", "Demo Admin"), ("user", "Demo User")):
        password = DEMO_DEFAULTS[f"demo_{who}_password"]
        assert weakness(password, [name, DEMO_DEFAULTS[f"demo_{who}_email"]]) is None
