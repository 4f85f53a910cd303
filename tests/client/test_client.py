"""The library against the running stack: sends that arrive, typed errors, pages, and the
retries that make a send safe (a 503, a refused connection, a lost answer, a 429)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from notifications_client import (
    AsyncNotificationsClient,
    ConnectionFailed,
    EndpointNotFound,
    NotFound,
    NotificationsClient,
    NotificationStatus,
    RateLimited,
    RetryEvent,
    RetryPolicy,
    SendRequest,
    ServiceUnavailable,
    Unauthorized,
    ValidationFailed,
)

from shared.settings import Settings
from tests.client.conftest import (
    WELCOME,
    FaultProxy,
    Mode,
    Stack,
    default_specs,
    free_port,
    settings_env,
    spec_has,
)


def test_a_send_is_delivered_and_found_by_id_and_by_request_id(
    client: NotificationsClient, demo_user: str
) -> None:
    request_id = f"client-{uuid.uuid4()}"
    accepted = client.send(demo_user, "welcome", variables=WELCOME, request_id=request_id)
    assert accepted.status == NotificationStatus.QUEUED
    assert accepted.request_id == request_id and not accepted.replayed

    final = client.wait(accepted.notification_id, timeout=30)

    assert final.status == NotificationStatus.DELIVERED and final.is_terminal
    assert final.history[0].status == "queued"
    assert final.history[-1].status == "delivered" and final.delivered_at is not None
    assert client.status(request_id).notification_id == accepted.notification_id


def test_sending_the_same_request_id_again_replays_the_first_answer(
    client: NotificationsClient, demo_user: str
) -> None:
    request_id = f"client-{uuid.uuid4()}"
    first = client.send(demo_user, "welcome", variables=WELCOME, request_id=request_id)
    again = client.send(demo_user, "welcome", variables=WELCOME, request_id=request_id)
    assert again.replayed and again.notification_id == first.notification_id
    assert [n.notification_id for n in client.list()] == [first.notification_id]


def test_errors_are_typed_and_carry_the_envelope_code(
    client: NotificationsClient, gateway_url: str
) -> None:
    with pytest.raises(NotFound) as missing_user:
        client.send(uuid.uuid4(), "welcome", variables=WELCOME)
    assert missing_user.value.code == "user_not_found" and missing_user.value.status_code == 404
    assert not isinstance(missing_user.value, EndpointNotFound)

    with pytest.raises(NotFound) as missing_notification:
        client.status("no-such-request")
    assert missing_notification.value.code == "notification_not_found"

    with pytest.raises(ValidationFailed) as invalid:
        client.send(uuid.uuid4(), "not a template code!", variables=WELCOME)
    assert invalid.value.code == "validation_error"
    assert [d.field for d in invalid.value.details] == ["template_code"]

    with (
        NotificationsClient(gateway_url, "ngw_not-a-key") as stranger,
        pytest.raises(Unauthorized) as refused,
    ):
        stranger.status(uuid.uuid4())
    assert refused.value.code == "invalid_api_key"


def test_list_walks_every_page_newest_first(client: NotificationsClient, demo_user: str) -> None:
    sent = [client.send(demo_user, "welcome", variables=WELCOME).notification_id for _ in range(5)]

    first = client.list_page(page=1, limit=2)
    listed = [n.notification_id for n in client.list(page_size=2)]

    assert first.meta.total == 5 and first.meta.total_pages == 3 and first.meta.has_next
    assert listed == list(reversed(sent))
    assert list(client.list(status="skipped", page_size=2)) == []  # the filter reaches the gateway


@pytest.mark.skipif(
    spec_has("post", "/v1/notifications/bulk"), reason="this gateway has bulk sends"
)
def test_a_gateway_without_bulk_sends_says_so_with_endpoint_not_found(
    client: NotificationsClient, demo_user: str
) -> None:
    with pytest.raises(EndpointNotFound) as absent:
        client.send_bulk([SendRequest(user_id=uuid.UUID(demo_user), template_code="welcome")])
    # 405 once another method serves the path (`DELETE /v1/notifications/{ref}` cancels).
    assert absent.value.code in ("not_found", "method_not_allowed")


# --- rate limits -------------------------------------------------------------------------


def test_a_429_is_waited_out_as_retry_after_says(
    gateway_url: str, make_api_key: Callable[..., str]
) -> None:
    # 30 a minute: a burst of 30, then one more every 2 s.
    key = make_api_key(rate_limit_per_minute=30)
    events: list[RetryEvent] = []
    with NotificationsClient(gateway_url, key, on_retry=events.append) as client:
        for _ in range(100):
            client.list_page(limit=1)  # every call succeeds, waiting when refused
            if events:
                break
    assert events, "the rate limit never refused a call"
    refusal = events[0].error
    assert isinstance(refusal, RateLimited) and refusal.code == "rate_limited"
    assert refusal.retry_after is not None and refusal.retry_after >= 1
    assert events[0].delay >= refusal.retry_after
    assert refusal.rate_limit is not None and refusal.rate_limit.remaining == 0


def test_a_429_past_the_deadline_is_raised_at_once(
    gateway_url: str, make_api_key: Callable[..., str]
) -> None:
    key = make_api_key(rate_limit_per_minute=30)
    policy = RetryPolicy(total_timeout=0.5)
    with NotificationsClient(gateway_url, key, retry=policy) as client:
        with pytest.raises(RateLimited) as refused:
            for _ in range(100):
                started = time.monotonic()
                client.list_page(limit=1)
        elapsed = time.monotonic() - started
    # Retry-After (>= 1 s) does not fit in the 0.5 s deadline: no wait was started.
    assert refused.value.retry_after is not None and refused.value.retry_after > 0.5
    assert refused.value.attempts == 1 and elapsed < 0.5


# --- retries that must not duplicate ---------------------------------------------------


@pytest.fixture(scope="module")
def user_service_proxy(stack_settings_fixture: Settings, stack: Stack) -> Iterator[FaultProxy]:
    proxy = FaultProxy(free_port(), "127.0.0.1", stack_settings_fixture.user_service_port)
    proxy.start()
    yield proxy
    proxy.stop()


@pytest.fixture(scope="module")
def gateway_with_faulty_user_service(
    stack_settings_fixture: Settings,
    user_service_proxy: FaultProxy,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    """A second gateway of the same stack that reaches the user service through a proxy: cut
    the proxy and this gateway answers 503 `dependency_unavailable` (nothing accepted)."""
    settings = stack_settings_fixture.model_copy(
        update={
            "api_gateway_port": free_port(),
            "user_service_url": f"http://127.0.0.1:{user_service_proxy.listen_port}",
        }
    )
    spec = next(s for s in default_specs(settings) if s.name == "api_gateway")
    gateway = Stack([spec], settings_env(settings), tmp_path_factory.mktemp("faulty-gateway"))
    gateway.start()
    try:
        gateway.wait_healthy(timeout=60)
        yield f"http://127.0.0.1:{settings.api_gateway_port}"
    finally:
        gateway.stop()


def test_a_503_is_retried_and_makes_exactly_one_notification(
    gateway_with_faulty_user_service: str,
    user_service_proxy: FaultProxy,
    api_key: str,
    demo_user: str,
) -> None:
    events: list[RetryEvent] = []

    def heal(event: RetryEvent) -> None:
        events.append(event)
        user_service_proxy.set_mode(Mode.PASS)

    user_service_proxy.set_mode(Mode.REFUSE)
    try:
        with NotificationsClient(gateway_with_faulty_user_service, api_key, on_retry=heal) as c:
            accepted = c.send(demo_user, "welcome", variables=WELCOME)
            listed = list(c.list())
            final = c.wait(accepted.notification_id, timeout=30)
    finally:
        user_service_proxy.set_mode(Mode.PASS)

    assert len(events) == 1
    assert isinstance(events[0].error, ServiceUnavailable)
    assert events[0].error.code == "dependency_unavailable"
    assert events[0].error.retry_after is not None and events[0].delay >= 1
    assert [n.notification_id for n in listed] == [accepted.notification_id]
    assert final.status == NotificationStatus.DELIVERED


@pytest.fixture
def gateway_proxy(stack_settings_fixture: Settings, stack: Stack) -> Iterator[FaultProxy]:
    proxy = FaultProxy(free_port(), "127.0.0.1", stack_settings_fixture.api_gateway_port)
    proxy.start()
    yield proxy
    proxy.stop()


def test_a_refused_connection_is_retried(
    gateway_proxy: FaultProxy, api_key: str, demo_user: str
) -> None:
    events: list[RetryEvent] = []

    def heal(event: RetryEvent) -> None:
        events.append(event)
        gateway_proxy.set_mode(Mode.PASS)

    gateway_proxy.set_mode(Mode.REFUSE)
    url = f"http://127.0.0.1:{gateway_proxy.listen_port}"
    with NotificationsClient(url, api_key, on_retry=heal) as client:
        accepted = client.send(demo_user, "welcome", variables=WELCOME)
        assert [n.notification_id for n in client.list()] == [accepted.notification_id]
    assert len(events) == 1 and isinstance(events[0].error, ConnectionFailed)


def test_the_deadline_bounds_the_retries(gateway_proxy: FaultProxy, api_key: str) -> None:
    gateway_proxy.set_mode(Mode.REFUSE)
    url = f"http://127.0.0.1:{gateway_proxy.listen_port}"
    policy = RetryPolicy(max_attempts=1000, total_timeout=1.0)
    started = time.monotonic()
    with (
        NotificationsClient(url, api_key, retry=policy) as client,
        pytest.raises(ConnectionFailed) as failed,
    ):
        client.status(uuid.uuid4())
    assert failed.value.attempts > 1
    assert time.monotonic() - started < 3.0


class LoseFirstAnswer(httpx.BaseTransport):
    """Delivers every request to the real gateway, but loses the answer to the first send, as
    a dropped connection would: the gateway accepted, the client never heard."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.keys: list[str | None] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if request.method == "POST":
            self.keys.append(request.headers.get("idempotency-key"))
            if len(self.keys) == 1:
                response.read()
                response.close()
                raise httpx.ReadError("connection reset before the answer", request=request)
        return response

    def close(self) -> None:
        self.inner.close()


def test_a_lost_answer_is_retried_with_the_same_key_and_replayed(
    gateway_url: str, api_key: str, demo_user: str
) -> None:
    transport = LoseFirstAnswer()
    with NotificationsClient(gateway_url, api_key, transport=transport) as client:
        accepted = client.send(demo_user, "welcome", variables=WELCOME)
        listed = [n.notification_id for n in client.list()]

    assert len(transport.keys) == 2 and transport.keys[0] == transport.keys[1] is not None
    assert accepted.replayed  # the first attempt had been accepted; the retry replayed it
    assert listed == [accepted.notification_id]


# --- asyncio -----------------------------------------------------------------------------


async def test_the_async_client_sends_waits_and_lists(
    gateway_url: str, api_key: str, demo_user: str
) -> None:
    async with AsyncNotificationsClient(gateway_url, api_key) as client:
        accepted = await client.send(demo_user, "welcome", channel="push", variables=WELCOME)
        seen: list[Any] = [d.status async for d in client.watch(accepted.notification_id)]
        listed = [n.notification_id async for n in client.list(page_size=1)]
    assert seen[-1] == NotificationStatus.DELIVERED
    assert listed == [accepted.notification_id]
