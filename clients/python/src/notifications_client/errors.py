"""Every failure the client raises, as one hierarchy that carries the envelope's error.

The gateway answers errors as `{success: false, error: <code>, message, details?}`; the class
follows the HTTP status and `code` is the stable error code to branch on (`user_not_found`,
`idempotency_key_reused`, ...). Catch `NotificationsError` to catch everything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from notifications_client.models import FieldError, RateLimit

if TYPE_CHECKING:
    from notifications_client.models import NotificationDetail


class NotificationsError(Exception):
    """Base of everything this client raises."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "error",
        status_code: int | None = None,
        details: Sequence[FieldError] = (),
        retry_after: float | None = None,
        rate_limit: RateLimit | None = None,
        attempts: int = 1,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status_code = status_code
        self.details = list(details)
        self.retry_after = retry_after
        self.rate_limit = rate_limit
        self.attempts = attempts

    def __str__(self) -> str:
        text = f"{self.code}: {self.message}"
        if self.status_code is not None:
            text += f" (HTTP {self.status_code})"
        for detail in self.details:
            text += f"; {detail.field}: {detail.message}"
        return text

    def to_dict(self) -> dict[str, Any]:
        """The error as the envelope had it, for `--json` output and logs."""
        return {
            "error": self.code,
            "message": self.message,
            "status_code": self.status_code,
            "details": [d.model_dump() for d in self.details],
            "attempts": self.attempts,
        }


class ConnectionFailed(NotificationsError):
    """The gateway could not be reached, or the connection broke before an answer came."""


class InvalidResponse(NotificationsError):
    """An answer that is not the gateway's envelope (a proxy's error page, say)."""


class BadRequest(NotificationsError):
    """400: malformed JSON or `Idempotency-Key`."""


class Unauthorized(NotificationsError):
    """401: the API key is missing, unknown or revoked."""


class Forbidden(NotificationsError):
    """403: the API key may not do this (an operator call without the admin scope)."""


class NotFound(NotificationsError):
    """404: no such user, template or notification (see `code`)."""


class EndpointNotFound(NotFound):
    """404 `not_found` / 405: this gateway has no such route, so it predates the feature.
    Resources that do not exist answer a specific code such as `notification_not_found`."""


class Conflict(NotificationsError):
    """409: `request_in_progress` (retried for you) or a state conflict (`not_cancellable`)."""


class PayloadTooLarge(NotificationsError):
    """413: the body is over the gateway's limit."""


class ValidationFailed(NotificationsError):
    """422: `validation_error` (see `details`), `missing_variables`, `idempotency_key_reused`."""


class RateLimited(NotificationsError):
    """429: retried for you while the deadline allows; `retry_after` says when to try again."""


class ServerError(NotificationsError):
    """5xx: the gateway failed."""


class ServiceUnavailable(ServerError):
    """503 `dependency_unavailable`: nothing was accepted; retried for you within the deadline."""


class WaitTimeout(NotificationsError, TimeoutError):
    """`wait` ran out of time before the notification reached a terminal status."""

    def __init__(self, message: str, *, last: NotificationDetail | None) -> None:
        super().__init__(message, code="wait_timeout")
        self.last = last


class WebhookVerificationFailed(NotificationsError):
    """A webhook delivery whose signature or timestamp does not check out: drop it."""


_BY_STATUS: dict[int, type[NotificationsError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    405: EndpointNotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: ValidationFailed,
    429: RateLimited,
    503: ServiceUnavailable,
}


def error_class(status_code: int, code: str) -> type[NotificationsError]:
    if status_code == 404 and code == "not_found":
        return EndpointNotFound
    if status_code in _BY_STATUS:
        return _BY_STATUS[status_code]
    return ServerError if status_code >= 500 else NotificationsError


def error_from_envelope(
    status_code: int,
    body: Mapping[str, Any],
    *,
    retry_after: float | None,
    rate_limit: RateLimit | None,
) -> NotificationsError:
    code = str(body.get("error") or f"http_{status_code}")
    message = str(body.get("message") or "the gateway refused the request")
    raw_details = body.get("details") or []
    details = [
        FieldError.model_validate(d)
        for d in raw_details
        if isinstance(d, Mapping) and "field" in d and "message" in d
    ]
    return error_class(status_code, code)(
        message,
        code=code,
        status_code=status_code,
        details=details,
        retry_after=retry_after,
        rate_limit=rate_limit,
    )
