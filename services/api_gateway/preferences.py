"""What the user's preferences say about one notification: send, skip, or hold.

A channel the user turned off, or the template's category turned off on that channel (both
`opted_out`), a push with no device or an email with no address is accepted as `skipped` with
a reason and never published. Quiet hours (a daily window in the
user's time zone, possibly across midnight) hold the notification as `scheduled` until they end;
the outbox relay releases it then.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from shared.contracts import TRANSACTIONAL, Contact
from shared.messaging.message import Channel
from shared.notification_status import NotificationStatus


@dataclass(frozen=True)
class Decision:
    status: NotificationStatus
    code: str | None = None
    """The stable reason (`opted_out`, `no_address`, `no_devices`, `quiet_hours`, and
    `send_at` for a send held until then): the status row's `status_reason`."""
    reason: str | None = None
    """The same for a person to read (the history's detail)."""
    release_at: datetime | None = None


SEND = Decision(NotificationStatus.QUEUED)
SKIP = NotificationStatus.SKIPPED


def decide(
    contact: Contact, channel: Channel, now: datetime, category: str = TRANSACTIONAL
) -> Decision:
    prefs = contact.preferences
    if not prefs.allows(channel.value, category):
        return Decision(SKIP, "opted_out", f"the user turned off {category} {channel.value}")
    if channel is Channel.EMAIL:
        if not prefs.email:
            return Decision(SKIP, "opted_out", "the user turned off email")
        if not contact.email:
            return Decision(SKIP, "no_address", "the user has no email address")
    else:
        if not prefs.push:
            return Decision(SKIP, "opted_out", "the user turned off push")
        if not contact.devices:
            return Decision(SKIP, "no_devices", "the user has no registered device")
    if prefs.quiet_hours is not None:
        end = quiet_hours_end(
            now, prefs.quiet_hours.start, prefs.quiet_hours.end, contact.timezone or "UTC"
        )
        if end is not None:
            return Decision(
                NotificationStatus.SCHEDULED,
                "quiet_hours",
                f"quiet hours until {end.isoformat()}",
                end,
            )
    return SEND


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _parse(hhmm: str) -> time | None:
    try:
        return time.fromisoformat(hhmm)
    except ValueError:
        return None


def quiet_hours_end(now: datetime, start: str, end: str, timezone: str) -> datetime | None:
    """If `now` falls in the window [start, end) of the user's local day, when it ends (UTC)."""
    start_t, end_t = _parse(start), _parse(end)
    if start_t is None or end_t is None or start_t == end_t:
        return None
    zone = _zone(timezone)
    local = now.astimezone(zone)
    t = local.time().replace(tzinfo=None)
    if start_t < end_t:
        inside = start_t <= t < end_t
        end_day = local.date()
    else:  # the window wraps midnight, e.g. 22:00-07:00
        inside = t >= start_t or t < end_t
        end_day = local.date() if t < end_t else local.date() + timedelta(days=1)
    if not inside:
        return None
    return datetime.combine(end_day, end_t, tzinfo=zone).astimezone(UTC)
