"""What a channel's sender deals with: the failure kinds, the result, and the one render path.

The consumer runtime (`consumer.py`) calls a `Sender` per claimed message and decides from what
it raised: a `TransientFailure` is retried with backoff (within the retry budget), a
`PermanentFailure` goes to the dead-letter queue. A sender raises nothing after the provider
accepted a message: what follows an acceptance is retried in place (`retry_in_place`), because
giving the message back would send it again. Both workers render through `render_message`, so
fetching the pinned version and classifying template failures happen once, here.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol, TypeVar

from aiormq.exceptions import AMQPError
from sqlalchemy.exc import InterfaceError, OperationalError
from tenacity import AsyncRetrying, retry_if_exception, stop_after_delay, wait_exponential

from shared.contracts import TemplateVersion
from shared.db import DB_UNAVAILABLE
from shared.messaging.message import NotificationMessage
from shared.messaging.publisher import PublishError
from shared.rendering import RenderError
from shared.template_client import (
    TemplateNotFound,
    TemplateRequestRefused,
    TemplateServiceUnavailable,
)

T = TypeVar("T")


class TransientFailure(Exception):
    """Worth retrying: connection refused, timeouts, SMTP 4xx, FCM 429/5xx.

    `retry_after_seconds` is the provider's `Retry-After` (see `parse_retry_after`): the next
    attempt waits at least that long, whatever the backoff says. `provider_down` says the
    provider itself failed (refused, timed out, 5xx), not this one message: enough of those in a
    row pause the worker's consumer until the provider answers again. `partial` is what counts
    as delivered if the retry budget runs out now (push: some devices accepted).
    """

    def __init__(
        self,
        reason: str,
        *,
        retry_after_seconds: float | None = None,
        provider_down: bool = False,
        partial: DeliveryResult | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after_seconds = retry_after_seconds
        self.provider_down = provider_down
        self.partial = partial


class UncertainDelivery(TransientFailure):
    """The provider may have taken the message: the reply was lost after it was handed over
    (SMTP: after the final `.`). Retried like a transient failure, with the same message id,
    and counted."""


class PermanentFailure(Exception):
    """Retrying cannot help: SMTP 5xx, an invalid address, FCM INVALID_ARGUMENT."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SkipDelivery(Exception):
    """Not to be sent at all, and not a failure: the notification ends `skipped` with
    `reason` (an address on the suppression list, say)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


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


@dataclass(frozen=True)
class Attempt:
    """The claim a sender works under: its writes are fenced by `token`."""

    notification_id: uuid.UUID
    token: uuid.UUID
    number: int
    expires_in_seconds: float | None = None
    """Time left before the notification expires (push passes it on as the message TTL)."""


class Sender(Protocol):
    """A channel's delivery: render and send one message, or raise a failure above."""

    async def deliver(self, message: NotificationMessage, attempt: Attempt) -> DeliveryResult: ...

    async def probe(self) -> bool:
        """Whether the provider answers at all (used to resume a paused consumer)."""
        ...


async def retry_in_place(
    write: Callable[[], Awaitable[T]], *, seconds: float, is_outage: Callable[[BaseException], bool]
) -> T:
    """Run a write that must not fail after a provider accepted: retried through outages
    (backoff up to 2 s) for up to `seconds`, then the last error is raised."""
    retrying = AsyncRetrying(
        retry=retry_if_exception(is_outage),
        wait=wait_exponential(multiplier=0.1, max=2.0),
        stop=stop_after_delay(seconds),
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            return await write()
    raise AssertionError("unreachable: tenacity reraises")


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
    version, a refused lookup or a render error is permanent, the template service being down
    is transient."""
    ref = message.template
    channel = message.notification_type.value
    try:
        version = await templates.get_version(ref.code, channel, ref.locale, ref.version)
        return version.render(message.variables)
    except TemplateNotFound as exc:
        raise PermanentFailure(
            f"template_not_found: {ref.code} v{ref.version} ({ref.locale})"
        ) from exc
    except TemplateRequestRefused as exc:
        raise PermanentFailure(f"template_request_refused: {exc.message}") from exc
    except TemplateServiceUnavailable as exc:
        raise TransientFailure(f"template_service_unavailable: {exc.message}") from exc
    except RenderError as exc:
        raise PermanentFailure(f"{exc.code}: {exc.message}") from exc


_OUTAGES: tuple[type[BaseException], ...] = (
    *DB_UNAVAILABLE,
    OSError,
    TimeoutError,
    OperationalError,
    InterfaceError,
    PublishError,
    AMQPError,
)


def is_outage(exc: BaseException) -> bool:
    """A dependency being down (worth waiting for) rather than this message being bad."""
    return isinstance(exc, _OUTAGES) or getattr(exc, "connection_invalidated", False) is True
