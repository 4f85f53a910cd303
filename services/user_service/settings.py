"""Settings only the user service reads (documented in `.env.example` like every other)."""

from __future__ import annotations

from typing import Literal

from shared.settings import Settings, widen


class UserServiceSettings(Settings):
    # "recommended" is pwdlib's Argon2id (~90 ms per hash here); "fast" is a cheap Argon2id
    # for test suites only, because a test registering dozens of users would otherwise spend
    # seconds hashing. Hashes record their own parameters, so either profile verifies both.
    password_hash_profile: Literal["recommended", "fast"] = "recommended"
    # Each recommended Argon2id hash holds 64 MiB while it runs: at most this many run at once
    # (strength checks share the bound), so a burst of registrations queues instead of
    # exhausting memory.
    password_hash_concurrency: int = 4
    # The gateway asks for a contact once per notification; a short TTL bounds staleness if an
    # invalidation is ever lost (e.g. Redis was down during a write).
    user_contact_cache_ttl_seconds: int = 60

    # --- tokens ---------------------------------------------------------------------------
    access_token_ttl_seconds: int = 15 * 60
    refresh_token_ttl_seconds: int = 30 * 24 * 3600

    # --- throttling (per client address as uvicorn reports it; see FORWARDED_ALLOW_IPS) ------
    login_rate_per_address: int = 30  # login attempts per minute
    login_failures_per_address: int = 50  # failed logins per failure window
    login_failure_window_seconds: int = 900
    # Per account, the first failures are free; each later one doubles the wait before the
    # next attempt (1 s, 2 s, 4 s, ...) up to the cap. Addresses the owner logged in from
    # recently are not held back, so a guesser elsewhere cannot keep the owner out.
    login_account_free_failures: int = 5
    login_account_max_delay_seconds: int = 60
    registrations_per_address_per_hour: int = 20

    # --- devices --------------------------------------------------------------------------
    # Registering one more drops the oldest; every send fans out to all of them.
    max_devices_per_user: int = 20

    def production_problems(self) -> list[str]:
        problems = super().production_problems()
        if self.jwt_private_key is None and self.jwt_private_key_file is None:
            problems.append(
                "JWT_PRIVATE_KEY or JWT_PRIVATE_KEY_FILE must hold the Ed25519 signing key"
            )
        return problems


def user_service_settings(settings: Settings | None = None) -> UserServiceSettings:
    return widen(settings, UserServiceSettings)
