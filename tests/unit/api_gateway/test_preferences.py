"""Preferences: skip for opted-out channels or missing addresses, hold for quiet hours."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from services.api_gateway.preferences import decide, quiet_hours_end
from shared.contracts import Contact
from shared.messaging.message import Channel
from shared.notification_status import NotificationStatus as S

NOON = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)


def _contact(**prefs: Any) -> Contact:
    devices = prefs.pop("devices", [{"token": "t", "platform": "ios"}])
    email = prefs.pop("email_address", "a@example.com")
    timezone = prefs.pop("timezone", "UTC")
    return Contact.model_validate(
        {
            "user_id": str(uuid.uuid4()),
            "name": "Ada",
            "email": email,
            "locale": "en",
            "timezone": timezone,
            "preferences": {"email": True, "push": True, **prefs},
            "devices": devices,
        }
    )


def test_enabled_channels_are_queued() -> None:
    assert decide(_contact(), Channel.EMAIL, NOON).status is S.QUEUED
    assert decide(_contact(), Channel.PUSH, NOON).status is S.QUEUED


def test_opted_out_or_unreachable_is_skipped_with_a_reason() -> None:
    cases = [
        (_contact(email=False), Channel.EMAIL, "turned off email"),
        (_contact(email_address=""), Channel.EMAIL, "no email address"),
        (_contact(push=False), Channel.PUSH, "turned off push"),
        (_contact(devices=[]), Channel.PUSH, "no registered device"),
    ]
    for contact, channel, reason in cases:
        decision = decide(contact, channel, NOON)
        assert decision.status is S.SKIPPED
        assert decision.reason is not None and reason in decision.reason


def test_an_opt_out_wins_over_quiet_hours() -> None:
    contact = _contact(email=False, quiet_hours={"start": "11:00", "end": "13:00"})
    assert decide(contact, Channel.EMAIL, NOON).status is S.SKIPPED


def test_quiet_hours_hold_until_they_end() -> None:
    contact = _contact(quiet_hours={"start": "11:00", "end": "13:00"})
    decision = decide(contact, Channel.EMAIL, NOON)
    assert decision.status is S.SCHEDULED
    assert decision.release_at == datetime(2026, 6, 15, 13, 0, tzinfo=UTC)


def test_outside_quiet_hours_is_queued() -> None:
    contact = _contact(quiet_hours={"start": "22:00", "end": "07:00"})
    assert decide(contact, Channel.PUSH, NOON).status is S.QUEUED


def test_a_window_across_midnight_ends_the_next_morning() -> None:
    late = datetime(2026, 6, 15, 23, 30, tzinfo=UTC)
    assert quiet_hours_end(late, "22:00", "07:00", "UTC") == datetime(2026, 6, 16, 7, 0, tzinfo=UTC)
    early = datetime(2026, 6, 16, 6, 0, tzinfo=UTC)
    assert quiet_hours_end(early, "22:00", "07:00", "UTC") == datetime(
        2026, 6, 16, 7, 0, tzinfo=UTC
    )


def test_the_window_is_in_the_users_time_zone() -> None:
    # 12:00 UTC is 14:00 in Paris (summer): inside 13:00-15:00 Paris, which ends 13:00 UTC.
    assert quiet_hours_end(NOON, "13:00", "15:00", "Europe/Paris") == datetime(
        2026, 6, 15, 13, 0, tzinfo=UTC
    )
    assert quiet_hours_end(NOON, "11:00", "13:00", "Europe/Paris") is None


def test_unusable_windows_and_zones_are_ignored_safely() -> None:
    assert quiet_hours_end(NOON, "bad", "13:00", "UTC") is None
    assert quiet_hours_end(NOON, "12:00", "12:00", "UTC") is None
    assert quiet_hours_end(NOON, "11:00", "13:00", "Not/AZone") is not None  # falls back to UTC


def test_a_category_turned_off_skips_only_that_category_on_that_channel() -> None:
    contact = _contact(categories={"marketing": {"email": False}})
    skipped = decide(contact, Channel.EMAIL, NOON, "marketing")
    assert (skipped.status, skipped.code) == (S.SKIPPED, "opted_out")
    assert skipped.reason == "the user turned off marketing email"
    assert decide(contact, Channel.EMAIL, NOON, "transactional").status is S.QUEUED
    assert decide(contact, Channel.EMAIL, NOON).status is S.QUEUED
    assert decide(contact, Channel.PUSH, NOON, "marketing").status is S.QUEUED
    on_again = _contact(categories={"marketing": {"email": True}})
    assert decide(on_again, Channel.EMAIL, NOON, "marketing").status is S.QUEUED
