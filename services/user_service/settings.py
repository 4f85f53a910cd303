"""Settings only the user service reads (documented in `.env.example` like every other)."""

from __future__ import annotations

from typing import Literal

from shared.settings import Settings


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
    """Widen plain `Settings` (e.g. a test's `base_settings`) to this service's settings,
    keeping every value given and the defaults for the service's own fields."""
    if settings is None:
        return UserServiceSettings()
    if isinstance(settings, UserServiceSettings):
        return settings
    return UserServiceSettings.model_validate(settings.model_dump())
