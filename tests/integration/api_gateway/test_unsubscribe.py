"""The gateway's unsubscribe links: the category travels in the message, an opted-out category
is skipped at acceptance, and `/u/{token}` (page and one-click POST) applies a signed token."""

from __future__ import annotations

import uuid

from shared.messaging.message import NotificationMessage
from shared.unsubscribe import Unsubscribe, make_token
from tests.conftest import wait_for
from tests.integration.api_gateway.conftest import Running, Tap, send_body
from tests.integration.api_gateway.upstream import Upstream

ONE_CLICK = {"content": "List-Unsubscribe=One-Click"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def _token(gw: Running, user_id: uuid.UUID, category: str = "marketing") -> str:
    secret = gw.gateway.settings.unsubscribe_secret.get_secret_value()
    return make_token(secret, Unsubscribe(user_id, "email", category))


async def test_the_category_travels_and_an_opted_out_category_is_skipped_at_acceptance(
    gw: Running, upstream: Upstream, tap: Tap
) -> None:
    upstream.add_template("news", "email", category="marketing")
    subscribed = upstream.add_user()
    opted_out = upstream.add_user(categories={"marketing": {"email": False}})

    sent = await gw.client.post(
        "/v1/notifications/send",
        json=send_body(subscribed, template_code="news"),
        headers=gw.headers,
    )
    assert sent.status_code == 202 and sent.json()["data"]["status"] == "queued"
    notification_id = sent.json()["data"]["notification_id"]

    async def published() -> NotificationMessage | None:
        for raw in await tap.drain():
            message = NotificationMessage.from_bytes(raw.body)
            if str(message.notification_id) == notification_id:
                return message
        return None

    message = await wait_for(published, timeout=10)
    assert message.template.category == "marketing"

    skipped = await gw.client.post(
        "/v1/notifications/send",
        json=send_body(opted_out, template_code="news"),
        headers=gw.headers,
    )
    data = skipped.json()["data"]
    assert (data["status"], data["status_reason"]) == ("skipped", "opted_out")
    # Transactional mail to the same user still goes.
    receipt = await gw.client.post(
        "/v1/notifications/send", json=send_body(opted_out), headers=gw.headers
    )
    assert receipt.json()["data"]["status"] == "queued"


async def test_the_page_asks_and_changes_nothing(gw: Running, upstream: Upstream) -> None:
    user_id = upstream.add_user()
    token = _token(gw, user_id)
    page = await gw.client.get(f"/u/{token}", headers={"Accept": "text/html"})
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["cache-control"] == "no-store"
    assert f'action="./{token}"' in page.text
    assert 'name="List-Unsubscribe" value="One-Click"' in page.text
    assert "marketing email" in page.text
    assert "http" not in page.text.replace("http-equiv", "")  # nothing loaded from anywhere
    assert upstream.state.unsubscribes == []

    invalid = await gw.client.get(f"/u/{token[:-2]}AA")
    assert invalid.status_code == 404 and "not valid" in invalid.text


async def test_one_click_post_unsubscribes_idempotently(gw: Running, upstream: Upstream) -> None:
    user_id = upstream.add_user()
    token = _token(gw, user_id)
    for _ in range(2):
        response = await gw.client.post(f"/u/{token}", headers=FORM, **ONE_CLICK)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["success"] is True
        assert body["data"] == {"channel": "email", "category": "marketing", "unsubscribed": True}
    assert (
        upstream.state.unsubscribes
        == [(str(user_id), {"channel": "email", "category": "marketing"})] * 2
    )
    assert upstream.state.users[str(user_id)]["preferences"]["categories"] == {
        "marketing": {"email": False}
    }
    # A browser gets a page; a user who is gone gets the same answer as anyone.
    page = await gw.client.post(f"/u/{token}", headers={**FORM, "Accept": "text/html"}, **ONE_CLICK)
    assert page.status_code == 200 and "no longer receive" in page.text
    gone = await gw.client.post(f"/u/{_token(gw, uuid.uuid4())}", headers=FORM, **ONE_CLICK)
    assert gone.status_code == 200


async def test_a_bad_token_is_404_in_the_envelope_and_reaches_no_one(
    gw: Running, upstream: Upstream
) -> None:
    user_id = upstream.add_user()
    token = _token(gw, user_id)
    other_secret = make_token("another-secret-" * 3, Unsubscribe(user_id, "email", "marketing"))
    transactional = _token(gw, user_id, category="transactional")
    for bad in (token[:-4] + "AAAA", other_secret, transactional, "not-a-token"):
        response = await gw.client.post(f"/u/{bad}", headers=FORM, **ONE_CLICK)
        assert response.status_code == 404, bad
        assert response.json()["error"] == "invalid_unsubscribe_token"
    not_token = await gw.client.post("/u/<script>", headers={"Accept": "text/html"})
    assert not_token.status_code in (404, 422) and "<script>" not in not_token.text
    assert upstream.state.unsubscribes == []


async def test_the_user_service_down_is_503_and_a_retry_works(
    gw: Running, upstream: Upstream
) -> None:
    user_id = upstream.add_user()
    token = _token(gw, user_id)
    await upstream.stop()
    down = await gw.client.post(f"/u/{token}", headers=FORM, **ONE_CLICK)
    assert down.status_code == 503 and down.json()["error"] == "dependency_unavailable"
    await upstream.start()
    again = await gw.client.post(f"/u/{token}", headers=FORM, **ONE_CLICK)
    assert again.status_code == 200


async def test_several_channels_skip_only_the_opted_out_one(
    gw: Running, upstream: Upstream
) -> None:
    upstream.add_template("news", "email", category="marketing")
    upstream.add_template("news", "push", category="marketing")
    user_id = upstream.add_user(
        devices=[{"token": "tok-news", "platform": "android"}],
        categories={"marketing": {"email": False}},
    )
    body = send_body(user_id, template_code="news", channels=["push", "email"])
    del body["notification_type"]
    response = await gw.client.post("/v1/notifications/send", json=body, headers=gw.headers)
    assert response.status_code == 202, response.text
    outcomes = {
        n["notification_type"]: (n["status"], n.get("status_reason"))
        for n in response.json()["data"]["notifications"]
    }
    assert outcomes["push"][0] == "queued"
    assert outcomes["email"] == ("skipped", "opted_out")
