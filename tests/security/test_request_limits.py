"""Oversized request heads and one bad path, against the running services (real uvicorn, as
`serve()` starts them).

Before: an 8 MB header was read whole and got 200, and `GET /v1/notifications/%00/status`
answered 500.
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit

import httpx
import pytest

from devtools.stack import ProcessSpec
from tests.security.conftest import SecurityStack

SERVICES = ("api_gateway", "user_service", "template_service", "email_service", "push_service")
KIB = 1024


def _spec(stack: SecurityStack, service: str) -> ProcessSpec:
    return stack.stack.specs[service]


def _headers(total: int) -> dict[str, str]:
    """Headers whose names and values add up to about `total` bytes, in 1 KiB pieces."""
    count = total // KIB
    return {f"x-filler-{i:03d}": "v" * (KIB - 12) for i in range(count)}


@pytest.mark.parametrize("service", SERVICES)
async def test_headers_over_16_kib_get_431_and_under_pass(
    security_stack: SecurityStack, service: str
) -> None:
    health = _spec(security_stack, service).health_url
    async with httpx.AsyncClient(timeout=10) as client:
        over = await client.get(health, headers=_headers(17 * KIB))
        under = await client.get(health, headers=_headers(15 * KIB))
    assert over.status_code == 431
    assert over.json()["error"] == "headers_too_large"
    assert under.status_code == 200


@pytest.mark.parametrize("service", SERVICES)
async def test_an_endless_header_is_cut_off_before_it_is_read(
    security_stack: SecurityStack, service: str
) -> None:
    """The server answers 431 and closes after the first few tens of KiB of a header that would
    go on for 8 MB; it never reads (or buffers) the rest."""
    url = urlsplit(_spec(security_stack, service).health_url)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    writer.write(f"GET {url.path} HTTP/1.1\r\nHost: x\r\nX-Big: ".encode())
    sent = 0
    answer = b""
    try:
        while sent < 8 * KIB * KIB and not answer:
            writer.write(b"a" * (64 * KIB))
            await writer.drain()
            sent += 64 * KIB
            with contextlib.suppress(TimeoutError):
                answer = await asyncio.wait_for(reader.read(4096), timeout=0.05)
    except ConnectionError:  # the server closed while we were still writing
        answer = answer or await reader.read(4096)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    assert b'"headers_too_large"' in answer
    assert sent <= 256 * KIB  # answered within a few chunks, not after 8 MB
    async with httpx.AsyncClient(timeout=10) as client:  # and it serves on
        assert (await client.get(url.geturl())).status_code == 200


async def test_a_status_lookup_with_a_nul_is_refused_not_a_500(
    security_stack: SecurityStack,
) -> None:
    settings = security_stack.settings
    async with httpx.AsyncClient(base_url=security_stack.url("api_gateway"), timeout=10) as client:
        response = await client.get(
            "/v1/notifications/%00/status",
            headers={"X-API-Key": settings.demo_api_key.get_secret_value()},
        )
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "validation_error"
