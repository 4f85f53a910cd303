"""The synchronous client. `AsyncNotificationsClient` (async_client.py) has the same methods.

Every call goes through `execute`: one idempotency key for a mutating call, made before the
first attempt and sent again with each retry, so a retry after a lost answer is a replay and
never a second notification.
"""

from __future__ import annotations

import builtins
import os
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx

from notifications_client import operations
from notifications_client.errors import NotificationsError
from notifications_client.models import (
    Accepted,
    BulkItemResult,
    CreatedWebhookEndpoint,
    DeadLetter,
    Notification,
    NotificationDetail,
    Page,
    Priority,
    PurgeResult,
    ReplayResult,
    SendRequest,
    WebhookDelivery,
    WebhookEndpoint,
)
from notifications_client.operations import ListFilters, Operation, new_idempotency_key
from notifications_client.polling import Pager, Watcher
from notifications_client.retry import Attempts, RetryEvent, RetryPolicy

T = TypeVar("T")

DEFAULT_TIMEOUT = 10.0
DEFAULT_PAGE_SIZE = 100  # the gateway's maximum `limit`
USER_AGENT = "notifications-client-python/0.1"


def default_headers(api_key: str, extra: Mapping[str, str] | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}", "User-Agent": USER_AGENT, **(extra or {})}


def env_config() -> tuple[str, str]:
    """`NOTIFY_URL` and `NOTIFY_API_KEY`, the same variables the `notify` command reads."""
    url = os.environ.get("NOTIFY_URL", "http://127.0.0.1:8080")
    key = os.environ.get("NOTIFY_API_KEY", "")
    if not key:
        raise NotificationsError("NOTIFY_API_KEY is not set", code="missing_api_key")
    return url, key


def build_send_request(
    user_id: uuid.UUID | str,
    template_code: str,
    *,
    channel: str,
    variables: Mapping[str, Any] | None,
    request_id: str | None,
    priority: Priority,
    locale: str | None,
    metadata: Mapping[str, Any] | None,
    send_at: datetime | None,
) -> SendRequest:
    """`send`'s keywords as a `SendRequest` (without a `request_id`, it makes a fresh one)."""
    fields: dict[str, Any] = {"request_id": request_id} if request_id is not None else {}
    return SendRequest(
        user_id=uuid.UUID(str(user_id)),
        template_code=template_code,
        notification_type=channel,
        variables=dict(variables or {}),
        priority=priority,
        locale=locale,
        metadata=dict(metadata or {}),
        send_at=send_at,
        **fields,
    )


class NotificationsClient:
    """A client of the gateway's API.

    `timeout` bounds each attempt; `retry.total_timeout` bounds a whole call with its retries
    and waits. `on_retry` is called before each wait (to log it, or show it).
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        on_retry: Callable[[RetryEvent], None] | None = None,
        headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.retry = retry or RetryPolicy()
        self.on_retry = on_retry
        self._timeout = timeout
        self._http = httpx.Client(
            base_url=base_url,
            headers=default_headers(api_key, headers),
            timeout=timeout,
            transport=transport,
        )
        self.webhooks = Webhooks(self)
        self.dead_letters = DeadLetters(self)

    @classmethod
    def from_env(cls, **options: Any) -> Self:
        url, key = env_config()
        return cls(url, key, **options)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def execute(self, operation: Operation[T]) -> T:
        """Run one API call with retries; the low-level door every method goes through."""
        attempts = Attempts(self.retry)
        headers = {}
        if operation.idempotency_key is not None:
            headers["Idempotency-Key"] = operation.idempotency_key
        while True:
            attempts.start()
            try:
                response = self._http.request(
                    operation.method,
                    operation.path,
                    params=operation.params,
                    json=operation.json,
                    headers=headers,
                    timeout=min(self._timeout, max(attempts.remaining(), 0.001)),
                )
                return operations.finish(operation, response)
            except httpx.TransportError as exc:
                error = operations.from_transport_error(exc)
            except NotificationsError as exc:
                error = exc
            delay = attempts.next_delay(error)
            if delay is None:
                raise error
            if self.on_retry is not None:
                self.on_retry(RetryEvent(attempts.count, delay, error))
            time.sleep(delay)

    # --- notifications -----------------------------------------------------------------

    def send(
        self,
        user_id: uuid.UUID | str,
        template_code: str,
        *,
        channel: str = "email",
        variables: Mapping[str, Any] | None = None,
        request_id: str | None = None,
        priority: Priority = "normal",
        locale: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        send_at: datetime | None = None,
        idempotency_key: str | None = None,
    ) -> Accepted:
        """Send one notification. The idempotency key defaults to the `request_id`."""
        request = build_send_request(
            user_id,
            template_code,
            channel=channel,
            variables=variables,
            request_id=request_id,
            priority=priority,
            locale=locale,
            metadata=metadata,
            send_at=send_at,
        )
        return self.send_request(request, idempotency_key=idempotency_key)

    def send_request(self, request: SendRequest, *, idempotency_key: str | None = None) -> Accepted:
        """`send` for a prepared `SendRequest`."""
        return self.execute(operations.send(request, idempotency_key))

    def send_bulk(
        self, requests: Sequence[SendRequest], *, idempotency_key: str | None = None
    ) -> list[BulkItemResult]:
        """Send many in one request: one result per item, in order. Each item is deduplicated
        by its own `request_id`. Raises `EndpointNotFound` on a gateway without bulk sends."""
        key = idempotency_key or new_idempotency_key()
        return self.execute(operations.send_bulk(requests, key))

    def status(self, ref: uuid.UUID | str) -> NotificationDetail:
        """A notification and its timeline, by notification id or by your `request_id`."""
        return self.execute(operations.status(ref))

    def cancel(self, ref: uuid.UUID | str) -> NotificationDetail:
        """Cancel a scheduled or queued notification (409 `not_cancellable` once a worker has
        it)."""
        return self.execute(operations.cancel(ref, new_idempotency_key()))

    def list_page(
        self, *, page: int = 1, limit: int = DEFAULT_PAGE_SIZE, filters: ListFilters | None = None
    ) -> Page[Notification]:
        """One page of the list, newest first, with its `meta`."""
        return self.execute(operations.list_page(filters or ListFilters(), page, limit))

    def list(
        self,
        *,
        user_id: uuid.UUID | str | None = None,
        status: str | None = None,
        channel: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> Iterator[Notification]:
        """Every notification of this API key that matches, newest first, page after page."""
        filters = ListFilters(user_id, status, channel, created_after, created_before)
        pager = notification_pager(filters, page_size)
        while (operation := pager.next()) is not None:
            yield from pager.take(self.execute(operation))

    def watch(
        self, ref: uuid.UUID | str, *, timeout: float | None = None, poll_interval: float = 0.2
    ) -> Iterator[NotificationDetail]:
        """The notification each time its status or timeline changes, until a terminal status
        (`delivered`, `failed`, `skipped`, `expired`, `cancelled`)."""
        watcher = Watcher(timeout, poll_interval)
        while True:
            detail = self.status(ref)
            if watcher.changed(detail):
                yield detail
            if detail.is_terminal:
                return
            time.sleep(watcher.next_wait())

    def wait(
        self, ref: uuid.UUID | str, timeout: float = 60.0, *, poll_interval: float = 0.2
    ) -> NotificationDetail:
        """Block until the notification reaches a terminal status and return it; raises
        `WaitTimeout` (with the last status read) after `timeout` seconds."""
        last: NotificationDetail | None = None
        for detail in self.watch(ref, timeout=timeout, poll_interval=poll_interval):
            last = detail
        assert last is not None  # watch yields at least the first read
        return last


def notification_pager(filters: ListFilters, page_size: int) -> Pager[Notification]:
    after = filters.created_after
    return Pager(
        lambda page: operations.list_page(filters, page, page_size),
        lambda item: item.notification_id,
        keep=filters.admits,
        # Newest first: once older than `created_after`, everything after is older too.
        past_end=lambda item: after is not None and item.created_at < after,
    )


def dead_letter_pager(channel: str, page_size: int) -> Pager[DeadLetter]:
    return Pager(
        lambda page: operations.dead_letter_page(channel, page, page_size),
        lambda item: item.message_id,
    )


class Webhooks:
    """Webhook endpoints of this API key (Standard Webhooks); verify deliveries with
    `notifications_client.webhooks.WebhookVerifier`."""

    def __init__(self, client: NotificationsClient) -> None:
        self._client = client

    def create(
        self, url: str, events: Sequence[str] = ("*",), *, description: str | None = None
    ) -> CreatedWebhookEndpoint:
        """Register an endpoint; the answer carries its signing secret, shown only now."""
        return self._client.execute(
            operations.create_webhook(url, events, description, new_idempotency_key())
        )

    def list(self) -> list[WebhookEndpoint]:
        return self._client.execute(operations.list_webhooks())

    def get(self, webhook_id: str) -> WebhookEndpoint:
        return self._client.execute(operations.get_webhook(webhook_id))

    def update(self, webhook_id: str, **changes: Any) -> WebhookEndpoint:
        """Change `url`, `events` or `description`."""
        return self._client.execute(
            operations.update_webhook(webhook_id, changes, new_idempotency_key())
        )

    def delete(self, webhook_id: str) -> None:
        self._client.execute(operations.delete_webhook(webhook_id, new_idempotency_key()))

    def rotate_secret(self, webhook_id: str) -> CreatedWebhookEndpoint:
        """A new secret; the old one keeps signing alongside it for a while."""
        return self._client.execute(
            operations.rotate_webhook_secret(webhook_id, new_idempotency_key())
        )

    def test(self, webhook_id: str) -> None:
        """Ask the gateway to send a test event to the endpoint."""
        self._client.execute(operations.send_test_webhook(webhook_id, new_idempotency_key()))

    def deliveries(self, webhook_id: str) -> builtins.list[WebhookDelivery]:
        return self._client.execute(operations.webhook_deliveries(webhook_id))


class DeadLetters:
    """Operators: messages that ended in a channel's dead-letter queue. Needs an API key with
    the admin scope."""

    def __init__(self, client: NotificationsClient) -> None:
        self._client = client

    def list(self, channel: str, *, page_size: int = DEFAULT_PAGE_SIZE) -> Iterator[DeadLetter]:
        pager = dead_letter_pager(channel, page_size)
        while (operation := pager.next()) is not None:
            yield from pager.take(self._client.execute(operation))

    def get(self, channel: str, message_id: str) -> DeadLetter:
        return self._client.execute(operations.dead_letter(channel, message_id))

    def replay(self, channel: str, message_id: str | None = None) -> ReplayResult:
        """Send one dead letter (or, without `message_id`, all of them) back to work."""
        return self._client.execute(
            operations.replay_dead_letters(channel, message_id, new_idempotency_key())
        )

    def purge(self, channel: str) -> PurgeResult:
        """Drop every dead letter of the channel for good."""
        return self._client.execute(operations.purge_dead_letters(channel, new_idempotency_key()))
