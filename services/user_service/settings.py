"""Settings only the user service reads (documented in `.env.example` like every other)."""

from __future__ import annotations

from typing import Literal

from shared.settings import Settings, widen


class UserServiceSettings(Settings):
    # "recommended" is pwdlib's Argon2id (~90 ms per hash here); "fast" is a cheap Argon2id
    # for test suites only, because a test registering dozens of users would otherwise spend
    # seconds hashing. Hashes record their own parameters, so either profile verifies both.
    password_hash_profile: Literal["recommended", "fast"] = "recommended"
    # The gateway asks for a contact once per notification; a short TTL bounds staleness if an
    # invalidation is ever lost (e.g. Redis was down during a write).
    user_contact_cache_ttl_seconds: int = 60
    # Login attempts allowed per (email, client IP) in one window; a success resets the count.
    login_max_attempts: int = 10
    login_window_seconds: int = 300


def user_service_settings(settings: Settings | None = None) -> UserServiceSettings:
    return widen(settings, UserServiceSettings)
