"""Settings only the push service reads (the FCM basics live in `shared.settings`)."""

from __future__ import annotations

from shared.settings import Settings, widen


class PushSettings(Settings):
    # One messages:send may wait this long; FCM answers in well under a second when healthy.
    fcm_timeout_seconds: float = 10.0
    # A token grant (the service-account JWT exchanged for an access token at `token_uri`).
    fcm_token_timeout_seconds: float = 10.0


def push_settings(settings: Settings | None = None) -> PushSettings:
    return widen(settings, PushSettings)
