"""What a channel's sender deals with: the failure kinds, the result, and the one render path.

The consumer runtime (`consumer.py`) calls a `Sender` per message and decides from what it
raised: a `TransientFailure` is retried with backoff, a `PermanentFailure` goes to the
dead-letter queue. Both workers render through `render_message`, so fetching the pinned version
and classifying template failures happen once, here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

from shared.contracts import TemplateVersion
from shared.messaging.message import NotificationMessage
from shared.rendering import RenderError
from shared.template_client import TemplateNotFound, TemplateServiceUnavailable


class TransientFailure(Exception):
    """Worth retrying: connection refused, timeouts, SMTP 4xx, FCM 429/5xx.

    `retry_after_seconds` is the provider's `Retry-After` (see `parse_retry_after`): the next
    attempt waits at least that long, whatever the backoff says.
    """

    def __init__(self, reason: str, *, retry_after_seconds: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after_seconds = retry_after_seconds


class PermanentFailure(Exception):
    """Retrying cannot help: SMTP 5xx, an invalid address, FCM INVALID_ARGUMENT."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


MAX_RETRY_AFTER_SECONDS = 24 * 3600.0


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """A `Retry-After` header (delay-seconds or an HTTP-date) as seconds from now.

    Garbage, negative values and dates in the past give None (no floor); absurd values are
    capped at a day so one bad header cannot park a message for a year.
    """
    if not value:
        return None
    text = value.strip()
    seconds: float
    if text.isdigit():
        seconds = float(text)
    else:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if seconds <= 0:
        return None
    return min(seconds, MAX_RETRY_AFTER_SECONDS)


@dataclass(frozen=True)
class DeliveryResult:
    provider_message_id: str | None = None
    detail: str | None = None


class Sender(Protocol):
    """A channel's delivery: render and send one message, or raise a failure above."""

    async def deliver(self, message: NotificationMessage) -> DeliveryResult: ...


class TemplateSource(Protocol):
    """Where a worker gets pinned template versions (`shared.template_client.TemplateClient`;
    tests pass a stand-in)."""

    async def get_version(
        self, code: str, channel: str, locale: str | None, version: int
    ) -> TemplateVersion: ...

    async def aclose(self) -> None: ...


async def render_message(templates: TemplateSource, message: NotificationMessage) -> dict[str, Any]:
    """The message's pinned template version rendered with its variables (push `data` folded
    back into a map), with every template failure classified for the runtime: a missing
    version or a render error is permanent, the template service being down is transient."""
    ref = message.template
    channel = message.notification_type.value
    try:
        version = await templates.get_version(ref.code, channel, ref.locale, ref.version)
        return version.render(message.variables)
    except TemplateNotFound as exc:
        raise PermanentFailure(
            f"template_not_found: {ref.code} v{ref.version} ({ref.locale})"
        ) from exc
    except TemplateServiceUnavailable as exc:
        raise TransientFailure(f"template_service_unavailable: {exc.message}") from exc
    except RenderError as exc:
        raise PermanentFailure(f"{exc.code}: {exc.message}") from exc
