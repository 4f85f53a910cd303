"""Each API call once, as data: method, path, query, body, idempotency key and how to read the
answer. The sync and async clients only differ in how they wait, so both run these.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
from pydantic import TypeAdapter, ValidationError

from notifications_client.errors import (
    ConnectionFailed,
    InvalidResponse,
    NotificationsError,
    error_from_envelope,
)
from notifications_client.models import (
    Accepted,
    BulkItemResult,
    CreatedWebhookEndpoint,
    DeadLetter,
    Notification,
    NotificationDetail,
    Page,
    PageMeta,
    PurgeResult,
    ReplayResult,
    SendRequest,
    WebhookDelivery,
    WebhookEndpoint,
)
from notifications_client.retry import rate_limit, retry_after

T = TypeVar("T")
Envelope = dict[str, Any]


@dataclass(frozen=True)
class Operation(Generic[T]):
    method: str
    path: str
    read: Callable[[Envelope, httpx.Response], T]
    params: Mapping[str, str | int] | None = None
    json: Any = None
    # Set on every call that changes something; the same key goes with each retry of the call.
    idempotency_key: str | None = None


def new_idempotency_key() -> str:
    return str(uuid.uuid4())


def _valid_header_key(value: str) -> bool:
    return 0 < len(value) <= 255 and all(0x21 <= ord(c) <= 0x7E for c in value)


def _segment(value: str | uuid.UUID) -> str:
    return quote(str(value), safe="")


def decode(response: httpx.Response) -> Envelope:
    """The envelope of a successful answer; any other answer raises its typed error."""
    try:
        body = response.json()
    except ValueError:
        body = None
    headers = response.headers
    if not isinstance(body, dict) or "success" not in body:
        if response.is_success:
            raise InvalidResponse(
                f"the answer to {response.request.method} {response.request.url.path} is not "
                "the gateway's JSON envelope; is the URL right?",
                code="invalid_response",
                status_code=response.status_code,
            )
        # Not our envelope (a proxy in between): keep the status, say what came back.
        snippet = response.text[:200].strip() or response.reason_phrase
        body = {"error": f"http_{response.status_code}", "message": snippet}
    if response.is_success and body.get("success") is not False:
        return body
    raise error_from_envelope(
        response.status_code,
        body,
        retry_after=retry_after(response.status_code, headers),
        rate_limit=rate_limit(headers),
    )


def finish(operation: Operation[T], response: httpx.Response) -> T:
    """The typed result of one answer, or the typed error it stands for."""
    envelope = decode(response)
    try:
        return operation.read(envelope, response)
    except ValidationError as exc:
        raise InvalidResponse(
            f"the answer to {operation.method} {operation.path} does not have the expected "
            f"shape ({exc.error_count()} problems); is the client too old for this gateway?",
            code="invalid_response",
            status_code=response.status_code,
        ) from exc


def from_transport_error(exc: httpx.TransportError) -> NotificationsError:
    """A failure below HTTP. Network trouble is worth retrying; a bad URL is not."""
    if isinstance(exc, httpx.TimeoutException):
        error: NotificationsError = ConnectionFailed(
            f"no answer in time ({type(exc).__name__})", code="timeout"
        )
    elif isinstance(exc, httpx.NetworkError | httpx.RemoteProtocolError | httpx.ProxyError):
        error = ConnectionFailed(
            f"cannot reach the gateway ({type(exc).__name__}: {exc})", code="connection_error"
        )
    else:
        error = NotificationsError(f"{type(exc).__name__}: {exc}", code="invalid_request")
    error.__cause__ = exc
    return error


def _data(envelope: Envelope) -> Any:
    return envelope.get("data")


def _reader(model: type[T]) -> Callable[[Envelope, httpx.Response], T]:
    adapter = TypeAdapter(model)

    def read(envelope: Envelope, _: httpx.Response) -> T:
        return adapter.validate_python(_data(envelope))

    return read


def _page_reader(model: type[T]) -> Callable[[Envelope, httpx.Response], Page[T]]:
    adapter = TypeAdapter(list[model])  # type: ignore[valid-type]

    def read(envelope: Envelope, _: httpx.Response) -> Page[T]:
        items: list[T] = adapter.validate_python(_data(envelope) or [])
        return Page(items=items, meta=PageMeta.model_validate(envelope["meta"]))

    return read


def _list_reader(model: type[T]) -> Callable[[Envelope, httpx.Response], list[T]]:
    adapter = TypeAdapter(list[model])  # type: ignore[valid-type]

    def read(envelope: Envelope, _: httpx.Response) -> list[T]:
        items: list[T] = adapter.validate_python(_data(envelope) or [])
        return items

    return read


def _read_accepted(envelope: Envelope, response: httpx.Response) -> Accepted:
    accepted = Accepted.model_validate(_data(envelope))
    accepted._replayed = response.headers.get("idempotency-replayed") == "true"
    return accepted


def _read_nothing(_: Envelope, __: httpx.Response) -> None:
    return None


# --- notifications ---------------------------------------------------------------------


def send(request: SendRequest, idempotency_key: str | None) -> Operation[Accepted]:
    """The key defaults to the `request_id`, as the gateway's own default does, so a send
    repeated with the same `request_id` from another process is deduplicated too."""
    key: str | None = request.request_id
    if idempotency_key is not None:
        if not _valid_header_key(idempotency_key):
            raise ValueError("an idempotency key is 1-255 visible ASCII characters")
        key = idempotency_key
    elif not _valid_header_key(request.request_id):
        key = None  # not a valid header value: the gateway falls back to the request_id
    return Operation(
        "POST", "/v1/notifications/send", _read_accepted, json=request.body(), idempotency_key=key
    )


def status(ref: str | uuid.UUID) -> Operation[NotificationDetail]:
    return Operation(
        "GET", f"/v1/notifications/{_segment(ref)}/status", _reader(NotificationDetail)
    )


@dataclass(frozen=True)
class ListFilters:
    user_id: uuid.UUID | str | None = None
    status: str | None = None
    channel: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None

    def params(self) -> dict[str, str]:
        params: dict[str, str] = {}
        if self.user_id is not None:
            params["user_id"] = str(self.user_id)
        if self.status is not None:
            params["status"] = str(self.status)
        if self.channel is not None:
            params["notification_type"] = str(self.channel)
        if self.created_after is not None:
            params["created_after"] = self.created_after.isoformat()
        if self.created_before is not None:
            params["created_before"] = self.created_before.isoformat()
        return params

    def admits(self, item: Notification) -> bool:
        """Applied to every item as well, so a gateway that ignores the time filters still
        gives the caller only what was asked for."""
        if self.created_after is not None and item.created_at < self.created_after:
            return False
        return not (self.created_before is not None and item.created_at >= self.created_before)


def list_page(filters: ListFilters, page: int, limit: int) -> Operation[Page[Notification]]:
    params: dict[str, str | int] = {**filters.params(), "page": page, "limit": limit}
    return Operation("GET", "/v1/notifications", _page_reader(Notification), params=params)


def _read_bulk(envelope: Envelope, _: httpx.Response) -> list[BulkItemResult]:
    data = _data(envelope)
    if isinstance(data, dict):
        data = data.get("results", data.get("items"))
    if not isinstance(data, list):
        raise InvalidResponse("the bulk answer has no list of results", code="invalid_response")
    results = []
    for index, item in enumerate(data):
        if isinstance(item, dict) and isinstance(item.get("data"), dict):
            # An envelope per item: lift the accepted notification next to its error fields.
            item = {**{k: v for k, v in item.items() if k != "data"}, **item["data"]}
        results.append(BulkItemResult.model_validate({"index": index, **item}))
    return results


def send_bulk(
    requests: Sequence[SendRequest], idempotency_key: str
) -> Operation[list[BulkItemResult]]:
    body = {"notifications": [r.body() for r in requests]}
    return Operation(
        "POST", "/v1/notifications/bulk", _read_bulk, json=body, idempotency_key=idempotency_key
    )


def cancel(ref: str | uuid.UUID, idempotency_key: str) -> Operation[NotificationDetail]:
    return Operation(
        "DELETE",
        f"/v1/notifications/{_segment(ref)}",
        _reader(NotificationDetail),
        idempotency_key=idempotency_key,
    )


# --- webhooks --------------------------------------------------------------------------


def create_webhook(
    url: str, events: Sequence[str], description: str | None, idempotency_key: str
) -> Operation[CreatedWebhookEndpoint]:
    body: dict[str, Any] = {"url": url, "events": list(events)}
    if description is not None:
        body["description"] = description
    return Operation(
        "POST",
        "/v1/webhooks",
        _reader(CreatedWebhookEndpoint),
        json=body,
        idempotency_key=idempotency_key,
    )


def list_webhooks() -> Operation[list[WebhookEndpoint]]:
    return Operation("GET", "/v1/webhooks", _list_reader(WebhookEndpoint))


def get_webhook(webhook_id: str) -> Operation[WebhookEndpoint]:
    return Operation("GET", f"/v1/webhooks/{_segment(webhook_id)}", _reader(WebhookEndpoint))


def update_webhook(
    webhook_id: str, changes: Mapping[str, Any], idempotency_key: str
) -> Operation[WebhookEndpoint]:
    return Operation(
        "PATCH",
        f"/v1/webhooks/{_segment(webhook_id)}",
        _reader(WebhookEndpoint),
        json=dict(changes),
        idempotency_key=idempotency_key,
    )


def delete_webhook(webhook_id: str, idempotency_key: str) -> Operation[None]:
    return Operation(
        "DELETE",
        f"/v1/webhooks/{_segment(webhook_id)}",
        _read_nothing,
        idempotency_key=idempotency_key,
    )


def rotate_webhook_secret(
    webhook_id: str, idempotency_key: str
) -> Operation[CreatedWebhookEndpoint]:
    return Operation(
        "POST",
        f"/v1/webhooks/{_segment(webhook_id)}/rotate-secret",
        _reader(CreatedWebhookEndpoint),
        idempotency_key=idempotency_key,
    )


def send_test_webhook(webhook_id: str, idempotency_key: str) -> Operation[None]:
    return Operation(
        "POST",
        f"/v1/webhooks/{_segment(webhook_id)}/test",
        _read_nothing,
        idempotency_key=idempotency_key,
    )


def webhook_deliveries(webhook_id: str) -> Operation[list[WebhookDelivery]]:
    return Operation(
        "GET",
        f"/v1/webhooks/{_segment(webhook_id)}/deliveries",
        _list_reader(WebhookDelivery),
    )


# --- dead letters (admin scope) --------------------------------------------------------


def dead_letter_page(channel: str, page: int, limit: int) -> Operation[Page[DeadLetter]]:
    return Operation(
        "GET",
        f"/v1/admin/dead-letters/{_segment(channel)}",
        _page_reader(DeadLetter),
        params={"page": page, "limit": limit},
    )


def dead_letter(channel: str, message_id: str) -> Operation[DeadLetter]:
    return Operation(
        "GET",
        f"/v1/admin/dead-letters/{_segment(channel)}/{_segment(message_id)}",
        _reader(DeadLetter),
    )


def replay_dead_letters(
    channel: str, message_id: str | None, idempotency_key: str
) -> Operation[ReplayResult]:
    return Operation(
        "POST",
        f"/v1/admin/dead-letters/{_segment(channel)}/replay",
        _reader(ReplayResult),
        json={"message_id": message_id} if message_id is not None else {},
        idempotency_key=idempotency_key,
    )


def purge_dead_letters(channel: str, idempotency_key: str) -> Operation[PurgeResult]:
    return Operation(
        "DELETE",
        f"/v1/admin/dead-letters/{_segment(channel)}",
        _reader(PurgeResult),
        params={"confirm": "true"},
        idempotency_key=idempotency_key,
    )
