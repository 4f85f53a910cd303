"""The console's CSRF tokens and redirects: bound to the session, never pointing off-site."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from services.api_gateway.console.web import safe_next
from services.api_gateway.operators import (
    NONCE_COOKIE,
    SESSION_COOKIE,
    CsrfFailed,
    OperatorAuth,
)
from shared.settings import Settings


class _NoKeys:
    async def verify(self, raw: str) -> None:
        return None


def _auth() -> OperatorAuth:
    return OperatorAuth(Settings(_env_file=None), _NoKeys(), None)  # type: ignore[arg-type]


def _request(cookies: dict[str, str]) -> Request:
    header = "; ".join(f"{k}={v}" for k, v in cookies.items())
    return Request({"type": "http", "method": "POST", "headers": [(b"cookie", header.encode())]})


def test_a_token_is_valid_only_with_its_nonce_and_session() -> None:
    auth = _auth()
    token = auth.csrf_token("nonce-1", "session-a")
    auth.check_csrf(_request({NONCE_COOKIE: "nonce-1", SESSION_COOKIE: "session-a"}), token)
    for cookies in (
        {NONCE_COOKIE: "nonce-2", SESSION_COOKIE: "session-a"},  # another browser
        {NONCE_COOKIE: "nonce-1", SESSION_COOKIE: "session-b"},  # after signing in again
        {SESSION_COOKIE: "session-a"},  # no nonce cookie
    ):
        with pytest.raises(CsrfFailed):
            auth.check_csrf(_request(cookies), token)
    with pytest.raises(CsrfFailed):
        auth.check_csrf(_request({NONCE_COOKIE: "nonce-1", SESSION_COOKIE: "session-a"}), None)


def test_tokens_depend_on_the_internal_key() -> None:
    other = OperatorAuth(Settings(_env_file=None, internal_api_key="another"), _NoKeys(), None)  # type: ignore[arg-type]
    assert _auth().csrf_token("n", "s") != other.csrf_token("n", "s")


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/console/notifications?status=failed", "/console/notifications?status=failed"),
        ("https://evil.example/console/", "/console/overview"),
        ("//evil.example/console/", "/console/overview"),
        ("/console/\\evil", "/console/overview"),
        ("/v1/admin/dead-letters/email", "/console/overview"),
        (None, "/console/overview"),
    ],
)
def test_after_sign_in_only_console_paths(target: str | None, expected: str) -> None:
    assert safe_next(target) == expected
