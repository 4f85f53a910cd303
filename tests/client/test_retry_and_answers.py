"""The client's decisions without a network: when to retry and how long to wait, how an
answer becomes a result or a typed error, and how pages and polls are walked."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
from notifications_client import (
    ConnectionFailed,
    EndpointNotFound,
    InvalidResponse,
    NotFound,
    NotificationDetail,
    NotificationsError,
    RateLimited,
    ServerError,
    ServiceUnavailable,
    ValidationFailed,
    WaitTimeout,
)
from notifications_client import operations as ops
from notifications_client.errors import error_from_envelope
from notifications_client.models import Page, PageMeta
from notifications_client.polling import Pager, Watcher
from notifications_client.retry import Attempts, RetryPolicy, retry_after


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _error(status: int, code: str, retry: float | None = None) -> NotificationsError:
    return error_from_envelope(
        status, {"error": code, "message": "m"}, retry_after=retry, rate_limit=None
    )


# --- retries ---------------------------------------------------------------------------


def test_backoff_grows_exponentially_up_to_the_cap_with_full_jitter() -> None:
    policy = RetryPolicy(base_delay=0.25, max_delay=2.0)
    assert [policy.backoff(n, rng=lambda: 1.0) for n in range(1, 6)] == [0.25, 0.5, 1, 2, 2]
    assert policy.backoff(4, rng=lambda: 0.0) == 0.0


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (ConnectionFailed("reset", code="connection_error"), True),
        (_error(429, "rate_limited"), True),
        (_error(503, "dependency_unavailable"), True),
        (_error(502, "http_502"), True),
        (_error(409, "request_in_progress"), True),
        (_error(409, "not_cancellable"), False),
        (_error(500, "internal_error"), False),
        (_error(422, "validation_error"), False),
        (_error(404, "user_not_found"), False),
    ],
)
def test_what_is_retried(error: NotificationsError, retried: bool) -> None:
    assert RetryPolicy().should_retry(error) is retried


def test_the_servers_retry_after_is_waited_at_least() -> None:
    attempts = Attempts(RetryPolicy(base_delay=0.25), clock=Clock(), rng=lambda: 1.0)
    attempts.start()
    assert attempts.next_delay(_error(429, "rate_limited", retry=3.0)) == 3.25


def test_no_wait_is_started_that_would_end_past_the_deadline() -> None:
    clock = Clock()
    attempts = Attempts(RetryPolicy(total_timeout=5.0), clock=clock, rng=lambda: 0.0)
    attempts.start()
    assert attempts.next_delay(_error(503, "dependency_unavailable", retry=4.0)) == 4.0
    clock.now += 2.0
    attempts.start()
    error = _error(503, "dependency_unavailable", retry=4.0)
    assert attempts.next_delay(error) is None and error.attempts == 2


def test_attempts_stop_at_the_maximum() -> None:
    attempts = Attempts(RetryPolicy(max_attempts=2), clock=Clock(), rng=lambda: 0.5)
    attempts.start()
    assert attempts.next_delay(ConnectionFailed("x")) is not None
    attempts.start()
    assert attempts.next_delay(ConnectionFailed("x")) is None


def test_retry_after_reads_seconds_dates_and_the_rate_limit_reset() -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert retry_after(503, httpx.Headers({"Retry-After": "2"})) == 2.0
    assert 25 < (retry_after(503, httpx.Headers({"Retry-After": later})) or 0) <= 30
    assert retry_after(429, httpx.Headers({"RateLimit-Reset": "7"})) == 7.0
    assert retry_after(503, httpx.Headers({"RateLimit-Reset": "7"})) is None
    assert retry_after(503, httpx.Headers({"Retry-After": "soon"})) is None


# --- answers ---------------------------------------------------------------------------


def _response(
    status: int, body: Any = None, *, text: str | None = None, **headers: str
) -> httpx.Response:
    request = httpx.Request("GET", "http://gateway/v1/notifications/x/status")
    if text is not None:
        return httpx.Response(status, text=text, headers=headers, request=request)
    return httpx.Response(status, json=body, headers=headers, request=request)


def _envelope_error(code: str, **extra: Any) -> dict[str, Any]:
    return {"success": False, "data": None, "error": code, "message": "no", "meta": None, **extra}


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (404, "not_found", EndpointNotFound),
        (405, "method_not_allowed", EndpointNotFound),
        (404, "notification_not_found", NotFound),
        (422, "validation_error", ValidationFailed),
        (429, "rate_limited", RateLimited),
        (503, "dependency_unavailable", ServiceUnavailable),
        (500, "internal_error", ServerError),
    ],
)
def test_an_error_envelope_becomes_its_typed_error(
    status: int, code: str, kind: type[NotificationsError]
) -> None:
    with pytest.raises(kind) as raised:
        ops.decode(_response(status, _envelope_error(code)))
    assert raised.value.code == code and raised.value.status_code == status
    if kind is NotFound:
        assert not isinstance(raised.value, EndpointNotFound)


def test_an_error_keeps_details_retry_after_and_rate_limit() -> None:
    body = _envelope_error("validation_error", details=[{"field": "user_id", "message": "bad"}])
    with pytest.raises(ValidationFailed) as invalid:
        ops.decode(_response(422, body))
    assert [(d.field, d.message) for d in invalid.value.details] == [("user_id", "bad")]
    assert "user_id: bad" in str(invalid.value)

    headers = {
        "Retry-After": "2",
        "RateLimit-Limit": "30",
        "RateLimit-Remaining": "0",
        "RateLimit-Reset": "2",
    }
    with pytest.raises(RateLimited) as limited:
        ops.decode(_response(429, _envelope_error("rate_limited"), **headers))
    assert limited.value.retry_after == 2.0
    assert limited.value.rate_limit is not None and limited.value.rate_limit.limit == 30


def test_an_answer_that_is_not_the_envelope_is_said_plainly() -> None:
    with pytest.raises(ServerError) as proxy_page:
        ops.decode(_response(502, text="<html>Bad Gateway</html>"))
    assert proxy_page.value.code == "http_502" and "Bad Gateway" in proxy_page.value.message
    with pytest.raises(InvalidResponse):
        ops.decode(_response(200, text="<html>a login page</html>"))


def test_an_answer_of_the_wrong_shape_is_invalid_response_not_a_crash() -> None:
    response = _response(200, {"success": True, "data": {"unexpected": 1}, "message": "ok"})
    with pytest.raises(InvalidResponse):
        ops.finish(ops.status("x"), response)


def test_a_status_this_client_does_not_know_yet_is_kept_as_text() -> None:
    detail = NotificationDetail.model_validate(
        {
            "notification_id": str(uuid.uuid4()), "status": "bounced",
            "notification_type": "sms", "user_id": str(uuid.uuid4()),
            "template_code": "w", "priority": 5, "created_at": "2030-01-01T00:00:00Z",
            "updated_at": "2030-01-01T00:00:00Z", "history": [], "shard_hint": "g-1",
        }
    )  # fmt: skip
    assert detail.status == "bounced" and not detail.is_terminal
    assert detail.model_extra == {"shard_hint": "g-1"}


def test_an_idempotency_key_goes_with_every_send() -> None:
    from notifications_client import SendRequest

    request = SendRequest(user_id=uuid.uuid4(), template_code="welcome")
    assert ops.send(request, None).idempotency_key == request.request_id
    assert ops.send(request, "mine").idempotency_key == "mine"
    unicode_id = SendRequest(user_id=uuid.uuid4(), template_code="w", request_id="ñ-1")
    assert ops.send(unicode_id, None).idempotency_key is None  # the gateway uses the body's
    with pytest.raises(ValueError):
        ops.send(request, "has space")


# --- pages and polls -------------------------------------------------------------------


def _page(items: list[int], *, has_next: bool) -> Page[int]:
    meta = PageMeta(total=9, limit=3, page=1, total_pages=3, has_next=has_next, has_previous=False)
    return Page(items=items, meta=meta)


def test_the_pager_skips_items_pushed_onto_the_next_page_and_stops_at_the_end() -> None:
    pager: Pager[int] = Pager(lambda page: ops.list_page(ops.ListFilters(), page, 3), lambda i: i)
    assert pager.take(_page([9, 8, 7], has_next=True)) == [9, 8, 7]
    # A new item arrived at the top: 7 moved onto page 2 and is not given twice.
    assert pager.take(_page([7, 6, 5], has_next=False)) == [6, 5]
    assert pager.next() is None


def test_the_pager_stops_early_past_the_end_of_a_time_window() -> None:
    pager: Pager[int] = Pager(
        lambda page: ops.list_page(ops.ListFilters(), page, 3),
        lambda i: i,
        past_end=lambda i: i < 5,
    )
    assert pager.take(_page([6, 5, 4], has_next=True)) == [6, 5]
    assert pager.next() is None


def _detail(status: str, history: int) -> NotificationDetail:
    return NotificationDetail.model_validate(
        {
            "notification_id": str(uuid.uuid4()), "status": status,
            "notification_type": "email", "user_id": str(uuid.uuid4()), "template_code": "w",
            "priority": 5, "created_at": "2030-01-01T00:00:00Z",
            "updated_at": "2030-01-01T00:00:00Z",
            "history": [{"status": "queued", "at": "2030-01-01T00:00:00Z"}] * history,
        }
    )  # fmt: skip


def test_the_watcher_shows_changes_backs_off_while_nothing_moves_and_times_out() -> None:
    clock = Clock()
    watcher = Watcher(timeout=3.0, poll_interval=0.2, max_poll_interval=0.4, clock=clock)
    assert watcher.changed(_detail("queued", 1))
    assert watcher.next_wait() == 0.2
    assert not watcher.changed(_detail("queued", 1))
    assert watcher.next_wait() == pytest.approx(0.3)
    assert not watcher.changed(_detail("queued", 1))
    assert watcher.next_wait() == 0.4
    assert watcher.changed(_detail("processing", 2))
    assert watcher.next_wait() == 0.2
    clock.now += 3.0
    with pytest.raises(WaitTimeout) as timed_out:
        watcher.next_wait()
    assert timed_out.value.last is not None and timed_out.value.last.status == "processing"
