"""The user service's errors: one constructor per answer, so each keeps one code and message."""

from __future__ import annotations

from shared.errors import Conflict, Forbidden, NotFound, Unauthorized


def user_not_found() -> NotFound:
    return NotFound("no such user", code="user_not_found")


def email_taken() -> Conflict:
    return Conflict("an account with this email already exists", code="email_taken")


def invalid_credentials() -> Unauthorized:
    return Unauthorized("the email or password is wrong", code="invalid_credentials")


def invalid_current_password() -> Forbidden:
    return Forbidden(
        "changing the password or the email needs the correct current_password",
        code="invalid_current_password",
    )


def invalid_refresh_token() -> Unauthorized:
    return Unauthorized(
        "the refresh token is invalid, expired or revoked; log in again",
        code="invalid_refresh_token",
    )


def refresh_token_reused() -> Unauthorized:
    return Unauthorized(
        "the refresh token was already used; this session is revoked, log in again",
        code="refresh_token_reused",
    )


def device_not_found() -> NotFound:
    return NotFound("no such device for this user", code="device_not_found")
