"""The delivery-time check of the email worker against the run's real user service: a marketing
message to a user who unsubscribed meanwhile ends `skipped`/`opted_out`, and transactional mail
to the same user is still sent."""

from __future__ import annotations

import uuid

import httpx
import pytest

from shared.messaging.message import Recipient, TemplateRef
from shared.settings import Settings
from tests.conftest import wait_for
from tests.identity import create_account
from tests.integration.email_service.conftest import EmailWorker


@pytest.fixture
def worker_settings(worker_settings: Settings) -> Settings:
    """The package's worker, with the policy of now on: contacts from the real user service."""
    return worker_settings.model_copy(update={"delivery_policy_check": True})


async def test_a_category_turned_off_after_acceptance_is_skipped_at_delivery(
    worker: EmailWorker, base_settings: Settings
) -> None:
    email = f"optout-{uuid.uuid4().hex[:10]}@example.com"
    user_id = await create_account(base_settings, email=email)
    async with httpx.AsyncClient(base_url=base_settings.user_service_url, timeout=5) as client:
        response = await client.post(
            f"/internal/v1/users/{user_id}/unsubscribe",
            json={"channel": "email", "category": "marketing"},
            headers={"X-Internal-API-Key": base_settings.internal_api_key.get_secret_value()},
        )
    assert response.status_code == 200, response.text

    recipient = Recipient(name="Test Account", email=email)
    news = await worker.notify(
        user_id=user_id,
        recipient=recipient,
        template=TemplateRef(code="welcome", version=3, locale="en", category="marketing"),
    )
    receipt = await worker.notify(user_id=user_id, recipient=recipient)
    skipped = await wait_for(worker.status_is(news.notification_id, "skipped"))
    assert skipped.status_reason == "opted_out"
    await wait_for(worker.status_is(receipt.notification_id, "delivered"))
    assert [m.rcpt_tos for m in worker.inbox.inbox.messages] == [[email]]
