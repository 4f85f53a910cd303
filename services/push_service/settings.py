"""Settings only the push service reads (the FCM basics live in `shared.settings`)."""

from __future__ import annotations

from shared.settings import Settings, load_settings


class PushSettings(Settings):
    # One messages:send may wait this long; FCM answers in well under a second when healthy.
    fcm_timeout_seconds: float = 10.0
    # A token grant (the service-account JWT exchanged for an access token at `token_uri`).
    fcm_token_timeout_seconds: float = 10.0


def push_settings(settings: Settings | None = None) -> PushSettings:
    """Widen plain `Settings` (e.g. a test's `base_settings`) to this service's settings,
    keeping every value given and the defaults for the service's own fields."""
    if settings is None:
        return load_settings(PushSettings)
    if isinstance(settings, PushSettings):
        return settings
    return PushSettings.model_validate(settings.model_dump())
