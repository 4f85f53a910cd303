"""Client of the Notifications API gateway: send, follow and list notifications.

    from notifications_client import NotificationsClient

    with NotificationsClient("http://127.0.0.1:8080", api_key) as client:
        accepted = client.send(user_id, "welcome", variables={"name": "Ada"})
        final = client.wait(accepted.notification_id, timeout=30)

Every mutating call carries an idempotency key, reused on its retries; connection errors,
429 and 503 are retried with backoff within a total deadline; answers are typed models and
failures typed exceptions carrying the gateway's error code.
"""

from notifications_client.async_client import AsyncNotificationsClient
from notifications_client.client import NotificationsClient
from notifications_client.errors import (
    BadRequest,
    Conflict,
    ConnectionFailed,
    EndpointNotFound,
    Forbidden,
    InvalidResponse,
    NotFound,
    NotificationsError,
    PayloadTooLarge,
    RateLimited,
    ServerError,
    ServiceUnavailable,
    Unauthorized,
    ValidationFailed,
    WaitTimeout,
    WebhookVerificationFailed,
)
from notifications_client.models import (
    TERMINAL_STATUSES,
    Accepted,
    BulkItemResult,
    Channel,
    CreatedWebhookEndpoint,
    DeadLetter,
    FieldError,
    HistoryEntry,
    Notification,
    NotificationDetail,
    NotificationStatus,
    Page,
    PageMeta,
    PurgeResult,
    RateLimit,
    ReplayResult,
    SendRequest,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from notifications_client.operations import ListFilters
from notifications_client.retry import RetryEvent, RetryPolicy

__all__ = [
    "TERMINAL_STATUSES",
    "Accepted",
    "AsyncNotificationsClient",
    "BadRequest",
    "BulkItemResult",
    "Channel",
    "Conflict",
    "ConnectionFailed",
    "CreatedWebhookEndpoint",
    "DeadLetter",
    "EndpointNotFound",
    "FieldError",
    "Forbidden",
    "HistoryEntry",
    "InvalidResponse",
    "ListFilters",
    "NotFound",
    "Notification",
    "NotificationDetail",
    "NotificationStatus",
    "NotificationsClient",
    "NotificationsError",
    "Page",
    "PageMeta",
    "PayloadTooLarge",
    "PurgeResult",
    "RateLimit",
    "RateLimited",
    "ReplayResult",
    "RetryEvent",
    "RetryPolicy",
    "SendRequest",
    "ServerError",
    "ServiceUnavailable",
    "Unauthorized",
    "ValidationFailed",
    "WaitTimeout",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WebhookEvent",
    "WebhookVerificationFailed",
]

__version__ = "0.1.0"
