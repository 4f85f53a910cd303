"""The email worker end to end: queue in, SMTP out, status and DLQ as the contract says."""

from __future__ import annotations

import uuid

from prometheus_client import REGISTRY

from shared.messaging.message import Recipient, TemplateRef
from shared.unsubscribe import Unsubscribe, read_token
from tests.conftest import wait_for
from tests.integration.email_service.conftest import EmailWorker

KEY = {"X-Internal-API-Key": "test-internal-key"}


async def test_an_email_is_rendered_sent_and_marked_delivered(worker: EmailWorker) -> None:
    message = await worker.notify()
    row = await wait_for(worker.status_is(message.notification_id, "delivered"))
    stored = worker.inbox.inbox.messages[0]
    assert row.provider_message_id == stored.id  # the inbox's "queued as <id>"
    assert row.attempts == 1
    assert stored.subject == "Welcome, Ada!"
    assert stored.header("Message-ID") == f"<{message.notification_id}@example.com>"
    # Transactional (the default category): no unsubscribe link.
    assert stored.header("List-Unsubscribe") == ""
    assert stored.header("List-Unsubscribe-Post") == ""
    assert stored.header("To") == "Ada <ada@example.com>"
    assert "https://example.com/start" in stored.part("plain")
    assert "<b>Ada</b>" in stored.part("html")
    assert stored.rcpt_tos == ["ada@example.com"]


async def test_a_marketing_email_carries_a_signed_one_click_unsubscribe(
    worker: EmailWorker,
) -> None:
    message = await worker.notify(
        template=TemplateRef(code="welcome", version=3, locale="en", category="marketing")
    )
    await wait_for(worker.status_is(message.notification_id, "delivered"))
    stored = worker.inbox.inbox.messages[0]
    value = " ".join(stored.header("List-Unsubscribe").split())  # unfolded
    https, mailto = value.split(", ")
    prefix = "<https://notify.example.com/u/"
    assert https.startswith(prefix) and https.endswith(">")
    token = https[len(prefix) : -1]
    assert mailto == f"<mailto:unsubscribe@example.com?subject=unsubscribe-{token}>"
    assert stored.header("List-Unsubscribe-Post") == "List-Unsubscribe=One-Click"
    secret = worker.settings.unsubscribe_secret.get_secret_value()
    assert read_token(secret, token) == Unsubscribe(message.user_id, "email", "marketing")
    assert "ada" not in token.lower()


async def test_smtp_refusing_for_a_while_then_recovering_loses_nothing(
    worker: EmailWorker,
) -> None:
    await worker.inbox.set_fault("refuse")
    messages = [await worker.notify() for _ in range(5)]
    for message in messages:
        row = await wait_for(worker.status_is(message.notification_id, "retrying"))
        assert "connection" in row.last_error.lower()
    await worker.inbox.set_fault("none")
    for message in messages:
        await wait_for(worker.status_is(message.notification_id, "delivered"))
    ids = sorted(m.header("Message-ID") for m in worker.inbox.inbox.messages)
    assert ids == sorted(f"<{m.notification_id}@example.com>" for m in messages)


async def test_a_temporary_smtp_failure_is_retried_then_delivered(worker: EmailWorker) -> None:
    await worker.inbox.set_fault("tempfail", 451)
    message = await worker.notify()
    row = await wait_for(worker.status_is(message.notification_id, "retrying"))
    assert row.last_error.startswith("SMTP 451")
    await worker.inbox.set_fault("none")
    row = await wait_for(worker.status_is(message.notification_id, "delivered"))
    assert row.attempts >= 2
    assert len(worker.inbox.inbox.messages) == 1


async def test_a_rejected_email_goes_to_the_dlq_and_a_replay_delivers_it(
    worker: EmailWorker,
) -> None:
    await worker.inbox.set_fault("permfail", 554)
    message = await worker.notify()
    row = await wait_for(worker.status_is(message.notification_id, "failed"))
    assert row.last_error.startswith("SMTP 554")
    listing = (await worker.client.get("/admin/dlq", headers=KEY)).json()
    assert [m["message_id"] for m in listing["data"]] == [str(message.notification_id)]
    assert listing["data"][0]["reason"] == "permanent_failure"

    await worker.inbox.set_fault("none")
    replay = await worker.client.post("/admin/dlq/replay", json={}, headers=KEY)
    assert replay.json()["data"]["replayed"] == [str(message.notification_id)]
    await wait_for(worker.status_is(message.notification_id, "delivered"))
    assert len(worker.inbox.inbox.messages) == 1
    assert (await worker.client.get("/admin/dlq", headers=KEY)).json()["data"] == []


async def test_a_missing_template_is_permanent_and_a_down_template_service_transient(
    worker: EmailWorker,
) -> None:
    missing = await worker.notify(template=TemplateRef(code="gone", version=1, locale="en"))
    row = await wait_for(worker.status_is(missing.notification_id, "failed"))
    assert "template_not_found" in row.last_error and row.attempts == 1

    worker.templates.down = True
    waiting = await worker.notify()
    row = await wait_for(worker.status_is(waiting.notification_id, "retrying"))
    assert "template_service_unavailable" in row.last_error
    worker.templates.down = False
    await wait_for(worker.status_is(waiting.notification_id, "delivered"))


async def test_bad_recipients_and_injected_headers_fail_without_sending(
    worker: EmailWorker,
) -> None:
    invalid = await worker.notify(recipient=Recipient(name="X", email="not-an-address"))
    injected = await worker.notify(
        variables={"name": "Ada\r\nBcc: eve@example.com", "link": "https://example.com"}
    )
    encoded = await worker.notify(
        variables={"name": "=?UTF-8?Q?=0A?=Bcc: eve@example.com", "link": "https://x.test"}
    )
    for message, reason in (
        (invalid, "recipient is not a valid email address"),
        (injected, "subject contains a control character"),
        (encoded, "subject contains an encoded-word"),
    ):
        row = await wait_for(worker.status_is(message.notification_id, "failed"))
        assert row.last_error == reason
    assert len(worker.inbox.inbox.messages) == 0


async def test_a_redelivered_delivered_message_is_not_sent_again(worker: EmailWorker) -> None:
    message = await worker.notify()
    await wait_for(worker.status_is(message.notification_id, "delivered"))
    before = _duplicates()
    await worker.publisher.publish_notification(message)  # what a redelivery looks like
    await wait_for(lambda: _above(_duplicates(), before))
    assert len(worker.inbox.inbox.messages) == 1


def _duplicates() -> float:
    labels = {"queue": "email.queue", "outcome": "duplicate"}
    return REGISTRY.get_sample_value("notifications_messages_consumed_total", labels) or 0.0


async def _above(value: float, floor: float) -> bool:
    return value > floor


async def test_connections_are_reused_and_bounded_by_the_pool(worker: EmailWorker) -> None:
    messages = [await worker.notify() for _ in range(20)]
    for message in messages:
        await wait_for(worker.status_is(message.notification_id, "delivered"))
    assert len(worker.inbox.inbox.messages) == 20
    assert worker.inbox.connections_accepted <= worker.settings.smtp_pool_size


async def test_the_test_email_endpoint_needs_the_key_and_reports_smtp_trouble(
    worker: EmailWorker,
) -> None:
    body = {"to": "ops@example.com", "subject": "Ping", "text": "pong"}
    assert (await worker.client.post("/test-email", json=body)).status_code == 401

    sent = await worker.client.post("/test-email", json=body, headers=KEY)
    assert sent.status_code == 200, sent.text
    assert worker.inbox.inbox.messages[0].subject == "Ping"
    assert sent.json()["data"]["provider_message_id"] == worker.inbox.inbox.messages[0].id

    bad = await worker.client.post("/test-email", json={**body, "to": "nope"}, headers=KEY)
    assert bad.status_code == 422 and bad.json()["error"] == "invalid_email"
    injected = {**body, "subject": "a\r\nBcc: eve@example.com"}
    assert (await worker.client.post("/test-email", json=injected, headers=KEY)).status_code == 422

    await worker.inbox.set_fault("tempfail")
    busy = await worker.client.post("/test-email", json=body, headers=KEY)
    assert busy.status_code == 503 and busy.json()["error"] == "smtp_unavailable"
    await worker.inbox.set_fault("permfail")
    refused = await worker.client.post("/test-email", json=body, headers=KEY)
    assert refused.status_code == 502 and refused.json()["error"] == "smtp_rejected"


async def test_health_answers_on_root_and_health(worker: EmailWorker) -> None:
    for path in ("/", "/health"):
        response = await worker.client.get(path)
        assert response.status_code == 200
        assert response.json()["data"]["checks"] == {"db": "up", "broker": "up", "consumer": "up"}
    metrics = await worker.client.get("/metrics")
    assert "notifications_messages_consumed_total" in metrics.text


async def test_an_unknown_route_is_an_enveloped_404(worker: EmailWorker) -> None:
    response = await worker.client.get(f"/nowhere/{uuid.uuid4()}")
    assert response.status_code == 404 and response.json()["error"] == "not_found"


async def test_a_reply_lost_after_data_is_an_uncertain_outcome_resent_with_the_same_message_id(
    worker: EmailWorker,
) -> None:
    """The server keeps the message but the connection drops before its 250: the worker
    cannot know. It retries (counted as uncertain) and both copies carry one Message-ID, so
    the mailbox sees the same message twice, not two messages."""

    def uncertain() -> float:
        value = REGISTRY.get_sample_value(
            "notification_uncertain_deliveries_total", {"channel": "email"}
        )
        return value or 0.0

    before = uncertain()
    await worker.inbox.set_fault("drop_after_data")
    message = await worker.notify()

    async def counted() -> bool:
        return uncertain() > before

    await wait_for(counted)
    await worker.inbox.set_fault("none")
    row = await wait_for(worker.status_is(message.notification_id, "delivered"))
    assert row.attempts >= 2
    ids = {m.header("Message-ID") for m in worker.inbox.inbox.messages}
    assert ids == {f"<{message.notification_id}@example.com>"}


async def test_a_hard_bounce_suppresses_the_address_and_later_sends_open_no_connection(
    worker: EmailWorker,
) -> None:
    address = f"gone-{uuid.uuid4().hex[:10]}@example.com"
    worker.inbox.faults.bounces.add(address)
    bounced = await worker.notify(recipient=Recipient(name="Gone", email=address))
    row = await wait_for(worker.status_is(bounced.notification_id, "failed"))
    assert "5.1.1" in row.last_error
    suppressed = await worker.app.state.sender.suppressions.get(address.upper())
    assert suppressed is not None and suppressed.reason == "hard_bounce"
    assert suppressed.notification_id == bounced.notification_id

    connections = worker.inbox.connections_accepted
    later = await worker.notify(recipient=Recipient(name="Gone", email=address.upper()))
    row = await wait_for(worker.status_is(later.notification_id, "skipped"))
    assert row.status_reason == "suppressed"
    assert worker.inbox.connections_accepted == connections
    other = await worker.notify()  # another address still gets its mail
    await wait_for(worker.status_is(other.notification_id, "delivered"))
    assert [m.rcpt_tos for m in worker.inbox.inbox.messages] == [["ada@example.com"]]
