"""The asyncio client: the same calls as `NotificationsClient`, awaited.

Both run the same operations, retry rules, pagers and watchers; only fetching and waiting
differ, so the docstrings of client.py hold here too.
"""

from __future__ import annotations

import asyncio
import builtins
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx

from notifications_client import operations
from notifications_client.client import (
    DEFAULT_PAGE_SIZE,
    DEFAULT_TIMEOUT,
    build_send_request,
    dead_letter_pager,
    default_headers,
    env_config,
    notification_pager,
)
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
from notifications_client.polling import Watcher
from notifications_client.retry import Attempts, RetryEvent, RetryPolicy

T = TypeVar("T")


class AsyncNotificationsClient:
    """See `NotificationsClient`. `on_retry` may be a plain function or a coroutine function."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        on_retry: Callable[[RetryEvent], Any] | None = None,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.retry = retry or RetryPolicy()
        self.on_retry = on_retry
        self._timeout = timeout
        self._http = httpx.AsyncClient(
            base_url=base_url,
            headers=default_headers(api_key, headers),
            timeout=timeout,
            transport=transport,
        )
        self.webhooks = AsyncWebhooks(self)
        self.dead_letters = AsyncDeadLetters(self)

    @classmethod
    def from_env(cls, **options: Any) -> Self:
        url, key = env_config()
        return cls(url, key, **options)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def execute(self, operation: Operation[T]) -> T:
        attempts = Attempts(self.retry)
        headers = {}
        if operation.idempotency_key is not None:
            headers["Idempotency-Key"] = operation.idempotency_key
        while True:
            attempts.start()
            try:
                response = await self._http.request(
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
                outcome = self.on_retry(RetryEvent(attempts.count, delay, error))
                if asyncio.iscoroutine(outcome):
                    await outcome
            await asyncio.sleep(delay)

    # --- notifications -----------------------------------------------------------------

    async def send(
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
        return await self.send_request(request, idempotency_key=idempotency_key)

    async def send_request(
        self, request: SendRequest, *, idempotency_key: str | None = None
    ) -> Accepted:
        return await self.execute(operations.send(request, idempotency_key))

    async def send_bulk(
        self, requests: Sequence[SendRequest], *, idempotency_key: str | None = None
    ) -> list[BulkItemResult]:
        key = idempotency_key or new_idempotency_key()
        return await self.execute(operations.send_bulk(requests, key))

    async def status(self, ref: uuid.UUID | str) -> NotificationDetail:
        return await self.execute(operations.status(ref))

    async def cancel(self, ref: uuid.UUID | str) -> NotificationDetail:
        return await self.execute(operations.cancel(ref, new_idempotency_key()))

    async def list_page(
        self, *, page: int = 1, limit: int = DEFAULT_PAGE_SIZE, filters: ListFilters | None = None
    ) -> Page[Notification]:
        return await self.execute(operations.list_page(filters or ListFilters(), page, limit))

    async def list(
        self,
        *,
        user_id: uuid.UUID | str | None = None,
        status: str | None = None,
        channel: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> AsyncIterator[Notification]:
        filters = ListFilters(user_id, status, channel, created_after, created_before)
        pager = notification_pager(filters, page_size)
        while (operation := pager.next()) is not None:
            for item in pager.take(await self.execute(operation)):
                yield item

    async def watch(
        self, ref: uuid.UUID | str, *, timeout: float | None = None, poll_interval: float = 0.2
    ) -> AsyncIterator[NotificationDetail]:
        watcher = Watcher(timeout, poll_interval)
        while True:
            detail = await self.status(ref)
            if watcher.changed(detail):
                yield detail
            if detail.is_terminal:
                return
            await asyncio.sleep(watcher.next_wait())

    async def wait(
        self, ref: uuid.UUID | str, timeout: float = 60.0, *, poll_interval: float = 0.2
    ) -> NotificationDetail:
        last: NotificationDetail | None = None
        async for detail in self.watch(ref, timeout=timeout, poll_interval=poll_interval):
            last = detail
        assert last is not None
        return last


class AsyncWebhooks:
    def __init__(self, client: AsyncNotificationsClient) -> None:
        self._client = client

    async def create(
        self, url: str, events: Sequence[str] = ("*",), *, description: str | None = None
    ) -> CreatedWebhookEndpoint:
        return await self._client.execute(
            operations.create_webhook(url, events, description, new_idempotency_key())
        )

    async def list(self) -> list[WebhookEndpoint]:
        return await self._client.execute(operations.list_webhooks())

    async def get(self, webhook_id: str) -> WebhookEndpoint:
        return await self._client.execute(operations.get_webhook(webhook_id))

    async def update(self, webhook_id: str, **changes: Any) -> WebhookEndpoint:
        return await self._client.execute(
            operations.update_webhook(webhook_id, changes, new_idempotency_key())
        )

    async def delete(self, webhook_id: str) -> None:
        await self._client.execute(operations.delete_webhook(webhook_id, new_idempotency_key()))

    async def rotate_secret(self, webhook_id: str) -> CreatedWebhookEndpoint:
        return await self._client.execute(
            operations.rotate_webhook_secret(webhook_id, new_idempotency_key())
        )

    async def test(self, webhook_id: str) -> None:
        await self._client.execute(operations.send_test_webhook(webhook_id, new_idempotency_key()))

    async def deliveries(self, webhook_id: str) -> builtins.list[WebhookDelivery]:
        return await self._client.execute(operations.webhook_deliveries(webhook_id))


class AsyncDeadLetters:
    def __init__(self, client: AsyncNotificationsClient) -> None:
        self._client = client

    async def list(
        self, channel: str, *, page_size: int = DEFAULT_PAGE_SIZE
    ) -> AsyncIterator[DeadLetter]:
        pager = dead_letter_pager(channel, page_size)
        while (operation := pager.next()) is not None:
            for item in pager.take(await self._client.execute(operation)):
                yield item

    async def get(self, channel: str, message_id: str) -> DeadLetter:
        return await self._client.execute(operations.dead_letter(channel, message_id))

    async def replay(self, channel: str, message_id: str | None = None) -> ReplayResult:
        return await self._client.execute(
            operations.replay_dead_letters(channel, message_id, new_idempotency_key())
        )

    async def purge(self, channel: str) -> PurgeResult:
        return await self._client.execute(
            operations.purge_dead_letters(channel, new_idempotency_key())
        )
