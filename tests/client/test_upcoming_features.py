"""The client's calls for gateway features that are announced but not in every gateway yet:
bulk sends, `send_at`, cancellation, time filters on the list, webhooks and the operators'
dead-letter API.

Each test is skipped while the committed gateway contract (`docs/openapi/api-gateway.yml`)
lacks its operation, and runs by itself once `make openapi` adds it: the contracts the client
was written against are in its README.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from notifications_client import (
    AsyncNotificationsClient,
    Forbidden,
    ListFilters,
    NotFound,
    NotificationsClient,
    NotificationStatus,
    SendRequest,
    Unauthorized,
)
from notifications_client.webhooks import WebhookVerifier

from services.api_gateway.api_keys import generate_key, store_key
from shared.db import asyncpg_dsn
from shared.settings import Settings
from tests.client.conftest import (
    SPEC,
    WELCOME,
    free_port,
    spec_has,
    spec_has_field,
    spec_has_query,
)
from tests.conftest import wait_for

needs_bulk = pytest.mark.skipif(
    not spec_has("post", "/v1/notifications/bulk"),
    reason="the gateway has no POST /v1/notifications/bulk yet",
)
needs_send_at = pytest.mark.skipif(
    not spec_has_field("SendRequest", "send_at"), reason="the gateway has no send_at yet"
)
needs_cancel = pytest.mark.skipif(
    not any(
        re.fullmatch(r"/v1/notifications/\{[^}]+\}", path) and "delete" in operations
        for path, operations in SPEC["paths"].items()
    ),
    reason="the gateway has no DELETE /v1/notifications/{id} yet",
)
needs_time_filter = pytest.mark.skipif(
    not spec_has_query("get", "/v1/notifications", "created_after"),
    reason="the gateway's list has no created_after yet",
)
needs_webhooks = pytest.mark.skipif(
    not spec_has("post", "/v1/webhooks"), reason="the gateway has no webhooks yet"
)
needs_dlq = pytest.mark.skipif(
    not spec_has("get", "/v1/admin/dead-letters/{channel}"),
    reason="the gateway has no dead-letter API yet",
)


# --- bulk --------------------------------------------------------------------------------


@needs_bulk
def test_a_bulk_send_answers_each_item_in_order_and_dedupes_by_request_id(
    client: NotificationsClient, demo_user: str
) -> None:
    items = [
        SendRequest(user_id=uuid.UUID(demo_user), template_code="welcome", variables=WELCOME),
        SendRequest(user_id=uuid.uuid4(), template_code="welcome", variables=WELCOME),
        SendRequest(
            user_id=uuid.UUID(demo_user),
            template_code="welcome",
            notification_type="push",
            variables=WELCOME,
        ),
    ]

    results = client.send_bulk(items)
    again = client.send_bulk(items)  # a new request key: the items' request ids dedupe

    assert [r.ok for r in results] == [True, False, True]
    assert results[1].error == "user_not_found"
    assert [r.notification_id for r in again] == [r.notification_id for r in results]
    assert len(list(client.list())) == 2
    assert client.wait(str(results[0].notification_id), timeout=30).status == "delivered"


@needs_bulk
def test_notify_bulk_uses_the_bulk_endpoint(
    notify: Callable[..., Any], client: NotificationsClient, demo_user: str, tmp_path: Path
) -> None:
    csv_file = tmp_path / "rows.csv"
    csv_file.write_text(
        "user_id,name,link\n" + "".join(f"{demo_user},Ada {n},https://e.x/{n}\n" for n in range(3))
    )
    result = notify("bulk", str(csv_file), "--template", "welcome", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(list(client.list())) == 3


# --- send_at and cancel ------------------------------------------------------------------


@needs_send_at
def test_a_send_at_in_the_future_is_scheduled_then_delivered(
    client: NotificationsClient, demo_user: str
) -> None:
    at = datetime.now(UTC) + timedelta(seconds=3)
    accepted = client.send(demo_user, "welcome", variables=WELCOME, send_at=at)
    assert accepted.status == NotificationStatus.SCHEDULED
    final = client.wait(accepted.notification_id, timeout=60)
    assert final.status == NotificationStatus.DELIVERED
    assert final.delivered_at is not None and final.delivered_at >= at


@needs_send_at
@needs_cancel
def test_a_scheduled_notification_is_cancelled_and_wait_ends_there(
    client: NotificationsClient, notify: Callable[..., Any], demo_user: str
) -> None:
    later = datetime.now(UTC) + timedelta(hours=1)
    accepted = client.send(demo_user, "welcome", variables=WELCOME, send_at=later)

    cancelled = client.cancel(accepted.notification_id)

    assert cancelled.status == NotificationStatus.CANCELLED
    assert client.wait(accepted.notification_id, timeout=5).status == "cancelled"

    sent = notify(
        "send", "--user", demo_user, "--template", "welcome", "--var", "name=Ada",
        "--var", "link=https://e.x", "--send-at", "1h", "--json",
    )  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    by_cli = notify("cancel", json.loads(sent.stdout)["notification_id"])
    assert by_cli.returncode == 0 and "cancelled" in by_cli.stdout


# --- time filters ------------------------------------------------------------------------


@needs_time_filter
def test_the_gateway_itself_filters_by_creation_time(
    client: NotificationsClient, demo_user: str
) -> None:
    first = client.send(demo_user, "welcome", variables=WELCOME)
    second = client.send(demo_user, "welcome", variables=WELCOME)
    filters = ListFilters(created_after=first.created_at + timedelta(microseconds=1))

    page = client.list_page(filters=filters)  # one raw page: no filtering by the client

    assert [n.notification_id for n in page.items] == [second.notification_id]
    assert page.meta.total == 1


# --- webhooks ----------------------------------------------------------------------------


class Receiver:
    """A webhook endpoint on this machine that records what it is sent."""

    def __init__(self) -> None:
        self.deliveries: list[tuple[dict[str, str], bytes]] = []
        received = self.deliveries

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received.append(({k: v for k, v in self.headers.items()}, body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver()
    made.thread.start()
    yield made
    made.server.shutdown()
    made.server.server_close()


@needs_webhooks
def test_webhook_endpoints_are_registered_changed_rotated_and_removed(
    client: NotificationsClient, receiver: Receiver
) -> None:
    created = client.webhooks.create(
        receiver.url, ["notification.delivered"], description="client test"
    )
    assert created.secret.startswith("whsec_")
    assert created.id in [w.id for w in client.webhooks.list()]
    assert client.webhooks.get(created.id).url == receiver.url
    assert client.webhooks.update(created.id, description="changed").description == "changed"
    assert client.webhooks.rotate_secret(created.id).secret != created.secret
    assert isinstance(client.webhooks.deliveries(created.id), list)
    client.webhooks.delete(created.id)
    with pytest.raises(NotFound):
        client.webhooks.get(created.id)


@needs_webhooks
async def test_a_delivered_notification_arrives_as_one_verified_webhook(
    gateway_url: str, api_key: str, demo_user: str, receiver: Receiver
) -> None:
    async with AsyncNotificationsClient(gateway_url, api_key) as client:
        hook = await client.webhooks.create(receiver.url, ["notification.delivered"])
        accepted = await client.send(demo_user, "welcome", variables=WELCOME)
        await client.wait(accepted.notification_id, timeout=30)

    async def delivered() -> list[tuple[dict[str, str], bytes]]:
        return list(receiver.deliveries)

    (headers, body), *more = await wait_for(delivered, timeout=30)
    event = WebhookVerifier(hook.secret).verify(body, headers)
    assert event.type == "notification.delivered" and not more
    assert event.notification.notification_id == accepted.notification_id


# --- dead letters ------------------------------------------------------------------------


@pytest.fixture
def admin_api_key(stack_settings_fixture: Settings) -> str:
    """An API key with the admin scope. Written against `store_key(..., scopes=[...])`; adjust
    here if the operator API lands with another way to grant the scope."""
    raw = generate_key()

    async def store() -> None:
        conn = await asyncpg.connect(asyncpg_dsn(stack_settings_fixture.database_url))
        try:
            await store_key(conn, raw, name=f"operator-{uuid.uuid4().hex[:8]}", scopes=["admin"])  # type: ignore[call-arg]
        finally:
            await conn.close()

    asyncio.run(store())
    return raw


@needs_dlq
def test_dead_letters_need_the_admin_scope(client: NotificationsClient) -> None:
    with pytest.raises((Forbidden, Unauthorized)):
        list(client.dead_letters.list("email"))


@needs_dlq
def test_an_operator_lists_and_replays_dead_letters(
    gateway_url: str, admin_api_key: str, notify: Callable[..., Any]
) -> None:
    with NotificationsClient(gateway_url, admin_api_key) as admin:
        letters = list(admin.dead_letters.list("email"))
        replayed = admin.dead_letters.replay("email")
    assert len(replayed.replayed) + len(replayed.skipped) == len(letters)

    listed = notify("dlq", "list", "email", "--json", env={"NOTIFY_API_KEY": admin_api_key})
    assert listed.returncode == 0, listed.stderr
