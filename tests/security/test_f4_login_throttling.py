"""F4: login throttling keyed on `X-Forwarded-For` from anyone (a new value per try: no limit),
and 11 wrong guesses locked the real owner out for 5 minutes.

Now forwarded headers count only from `FORWARDED_ALLOW_IPS` (uvicorn's mechanism), failures
are throttled per address and per account separately, the per-account throttle is a growing
delay that never holds back the owner's own address, and registrations are limited per
address. Every test talks to a real user service over TCP.
"""

from __future__ import annotations

import httpx

from shared.settings import Settings
from tests.conftest import wait_for
from tests.identity import PASSWORD
from tests.security.conftest import API, login, register, unique_email, user_service

WRONG = {"password": "not-the-password"}


def _from(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": address}


async def _guess(client: httpx.AsyncClient, email: str, address: str | None = None) -> int:
    headers = _from(address) if address else {}
    body = {"email": email, **WRONG}
    return (await client.post(f"{API}/auth/login", json=body, headers=headers)).status_code


async def test_forwarded_headers_from_an_untrusted_peer_are_ignored(
    base_settings: Settings,
) -> None:
    """The exploit: a new X-Forwarded-For on every guess. Without a trusted proxy every guess
    is counted against the real peer, so the address is cut off all the same."""
    with user_service(base_settings, login_failures_per_address=5) as url:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            statuses = [await _guess(client, unique_email(), f"203.0.113.{n}") for n in range(1, 8)]
    assert statuses[:5] == [401] * 5
    assert statuses[5:] == [429, 429]


async def test_a_trusted_proxys_forwarded_address_is_the_client(base_settings: Settings) -> None:
    """Behind a configured proxy, each forwarded client is throttled on its own."""
    with user_service(
        base_settings, forwarded_allow_ips="127.0.0.1", login_failures_per_address=3
    ) as url:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            attacker = [await _guess(client, unique_email(), "198.51.100.7") for _ in range(4)]
            bystander = await _guess(client, unique_email(), "198.51.100.8")
    assert attacker == [401, 401, 401, 429]
    assert bystander == 401


async def test_guessing_cannot_keep_the_owner_out(base_settings: Settings) -> None:
    """Eleven wrong guesses from elsewhere; the owner, from the address they use, logs in."""
    with user_service(
        base_settings, forwarded_allow_ips="127.0.0.1", login_account_free_failures=3
    ) as url:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            owner = await register(client, name="Owner Person", email=unique_email())
            await client.post(  # the owner's usual address is now known
                f"{API}/auth/login",
                json={"email": owner.email, "password": PASSWORD},
                headers=_from("192.0.2.10"),
            )
            guesses = []
            for n in range(11):
                body = {"email": owner.email, **WRONG}
                guess = await client.post(
                    f"{API}/auth/login", json=body, headers=_from(f"203.0.113.{n % 3 + 1}")
                )
                guesses.append(guess)
            assert [g.status_code for g in guesses[:4]] == [401] * 4
            held = [g for g in guesses[4:] if g.status_code == 429]
            assert held and all("for this account" in g.json()["message"] for g in held)
            assert all(1 <= int(g.headers["Retry-After"]) <= 60 for g in held)
            response = await client.post(
                f"{API}/auth/login",
                json={"email": owner.email, "password": PASSWORD},
                headers=_from("192.0.2.10"),
            )
            assert response.status_code == 200, response.text


async def test_account_delays_grow_then_stop_at_the_cap(base_settings: Settings) -> None:
    """Per account, failures from any address buy doubling delays up to the cap."""
    with user_service(
        base_settings,
        forwarded_allow_ips="127.0.0.1",
        login_account_free_failures=1,
        login_account_max_delay_seconds=2,
    ) as url:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            email = unique_email()
            seen: list[int] = []
            for n in range(5):
                address = f"203.0.113.{n + 10}"  # a new address each time: per account

                async def counted(address: str = address) -> bool:
                    # Retry until the delay has passed and the guess is counted as a failure.
                    response = await client.post(
                        f"{API}/auth/login",
                        json={"email": email, **WRONG},
                        headers=_from(address),
                    )
                    if response.status_code == 429:
                        seen.append(int(response.headers["Retry-After"]))
                        return False
                    assert response.status_code == 401
                    return True

                await wait_for(counted, timeout=10, interval=0.1)
    # One free failure, then waits of 1 s and 2 s (doubling); the next would be 4 s but the cap
    # holds it at 2 s.
    assert seen and 1 in seen and max(seen) == 2


async def test_attempts_are_limited_per_address(base_settings: Settings) -> None:
    with user_service(base_settings, login_rate_per_address=3) as url:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            owner = await register(client)
            statuses = [
                (
                    await client.post(
                        f"{API}/auth/login",
                        json={"email": owner.email, "password": PASSWORD},
                    )
                ).status_code
                for _ in range(3)
            ]
    # The registration helper logged in once already: two more, then refused.
    assert statuses == [200, 200, 429]


async def test_registrations_are_limited_per_address(base_settings: Settings) -> None:
    with user_service(
        base_settings, forwarded_allow_ips="127.0.0.1", registrations_per_address_per_hour=2
    ) as url:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:

            async def register_from(address: str) -> httpx.Response:
                body = {"name": "Flood", "email": unique_email(), "password": PASSWORD}
                return await client.post(f"{API}/users", json=body, headers=_from(address))

            flood = [(await register_from("203.0.113.50")).status_code for _ in range(3)]
            elsewhere = await register_from("203.0.113.51")
    assert flood == [201, 201, 429]
    assert elsewhere.status_code == 201


async def test_a_successful_login_clears_the_accounts_failures(base_settings: Settings) -> None:
    with user_service(base_settings, login_account_free_failures=2) as url:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            owner = await register(client)
            for _ in range(3):
                assert await _guess(client, owner.email) == 401
                assert await _guess(client, owner.email) == 401
                again = await login(client, owner.email, PASSWORD, owner.id)
                assert again.access_token
