"""Times on the command line: `1h`, `90m`, `2d12h` (relative to now) or ISO 8601."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_DURATION = re.compile(r"^(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?$")


def parse_duration(text: str) -> timedelta | None:
    match = _DURATION.match(text.strip().lower())
    if match is None or not any(match.groupdict().values()):
        return None
    parts = {name: int(value or 0) for name, value in match.groupdict().items()}
    return timedelta(days=parts["d"], hours=parts["h"], minutes=parts["m"], seconds=parts["s"])


def parse_moment(text: str, *, ago: bool, now: datetime | None = None) -> datetime:
    """A duration counts back from now (`ago`) or ahead of it; a time without an offset is
    local time. Raises ValueError with a message fit for the user."""
    now = now or datetime.now(UTC)
    duration = parse_duration(text.lstrip("+"))
    if duration is not None:
        return now - duration if ago else now + duration
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r} is neither a duration (30m, 1h, 2d) nor an ISO 8601 time "
            "(2030-01-02T09:00:00+01:00)"
        ) from None
    return moment if moment.tzinfo is not None else moment.astimezone()
