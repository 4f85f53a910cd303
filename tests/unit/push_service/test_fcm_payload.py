"""Building FCM v1 messages per platform, and reading FCM's error answers (no I/O)."""

from __future__ import annotations

from typing import Any

from services.push_service.fcm import FcmAnswer, classify_error, fingerprint
from services.push_service.payload import PushContent, build_message, content_from_rendered

FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"


def _error(
    status: int,
    code: str | None,
    *,
    headers: dict[str, str] | None = None,
    extra: list[dict[str, Any]] | None = None,
) -> FcmAnswer:
    details = ([{"@type": FCM_ERROR, "errorCode": code}] if code else []) + (extra or [])
    body = {"error": {"code": status, "message": "m", "status": "S", "details": details}}
    return FcmAnswer(status, headers or {}, body)


def test_rendered_fields_become_content_with_data_and_link() -> None:
    rendered = {
        "title": "Hi Ada",
        "body": "Welcome",
        "image_url": "https://img.example/a.png",
        "data": {"screen": "home"},
    }
    content = content_from_rendered(rendered, {"link": "https://app.example/x", "name": "Ada"})
    assert content == PushContent(
        title="Hi Ada",
        body="Welcome",
        image="https://img.example/a.png",
        link="https://app.example/x",
        data={"screen": "home", "link": "https://app.example/x"},
    )


def test_android_message_is_high_priority_from_seven() -> None:
    content = PushContent("T", "B", image="https://i/x.png", data={"n": "1"})
    message = build_message(content, platform="android", priority=8, notification_id="nid")
    assert message["notification"] == {"title": "T", "body": "B", "image": "https://i/x.png"}
    assert message["data"] == {"n": "1", "notification_id": "nid"}
    assert message["android"]["priority"] == "HIGH"
    assert "apns" not in message and "webpush" not in message
    normal = build_message(content, platform="android", priority=5, notification_id="nid")
    assert normal["android"]["priority"] == "NORMAL"


def test_ios_message_lets_the_image_through_apns() -> None:
    content = PushContent("T", "B", image="https://i/x.png")
    apns = build_message(content, platform="ios", priority=5, notification_id="n")["apns"]
    assert apns["payload"]["aps"]["mutable-content"] == 1
    assert apns["payload"]["aps"]["alert"] == {"title": "T", "body": "B"}
    assert apns["fcm_options"] == {"image": "https://i/x.png"}


def test_web_message_links_only_https() -> None:
    secure = PushContent("T", "B", link="https://app.example/x")
    webpush = build_message(secure, platform="web", priority=9, notification_id="n")["webpush"]
    assert webpush["fcm_options"] == {"link": "https://app.example/x"}
    assert webpush["headers"]["Urgency"] == "high"
    plain = PushContent("T", "B", link="http://app.example/x")
    assert (
        "fcm_options"
        not in build_message(plain, platform="web", priority=1, notification_id="n")["webpush"]
    )


NID = "6f1c2a0e-2b7d-4a53-9b8e-0c1d2e3f4a5b"


def test_every_platform_collapses_copies_of_one_notification() -> None:
    """A copy sent twice replaces the first on the device instead of showing beside it."""
    content = PushContent("T", "B")
    android = build_message(content, platform="android", priority=5, notification_id=NID)
    ios = build_message(content, platform="ios", priority=5, notification_id=NID)
    web = build_message(content, platform="web", priority=5, notification_id=NID)
    assert android["android"]["notification"]["tag"] == NID
    assert ios["apns"]["headers"]["apns-collapse-id"] == NID
    topic = web["webpush"]["headers"]["Topic"]
    assert topic == NID.replace("-", "") and len(topic) <= 32


def test_the_time_left_becomes_each_platforms_ttl() -> None:
    content = PushContent("T", "B")
    android = build_message(
        content, platform="android", priority=5, notification_id=NID, expires_in_seconds=90.7
    )
    ios = build_message(
        content, platform="ios", priority=5, notification_id=NID, expires_in_seconds=90
    )
    web = build_message(
        content, platform="web", priority=5, notification_id=NID, expires_in_seconds=90
    )
    assert android["android"]["ttl"] == "90s"
    assert int(ios["apns"]["headers"]["apns-expiration"]) > 1_700_000_000
    assert web["webpush"]["headers"]["TTL"] == "90"
    no_expiry = build_message(content, platform="android", priority=5, notification_id=NID)
    assert "ttl" not in no_expiry["android"]


def test_non_string_data_values_are_json_encoded() -> None:
    content = PushContent("T", "B", data={"a": "x"})
    message = build_message(content, platform="android", priority=5, notification_id="n")
    assert all(isinstance(v, str) for v in message["data"].values())


def test_unregistered_and_token_invalid_argument_are_dead_tokens() -> None:
    assert classify_error("t", _error(404, "UNREGISTERED")).dead_token
    invalid = classify_error("t", _error(400, "INVALID_ARGUMENT"))
    assert (invalid.outcome, invalid.dead_token) == ("invalid_token", True)


def test_invalid_argument_naming_a_payload_field_keeps_the_token() -> None:
    violation = {
        "@type": "type.googleapis.com/google.rpc.BadRequest",
        "fieldViolations": [{"field": "message.android.ttl", "description": "bad"}],
    }
    result = classify_error("t", _error(400, "INVALID_ARGUMENT", extra=[violation]))
    assert (result.outcome, result.dead_token) == ("rejected", False)


def test_quota_and_unavailable_are_transient_with_retry_after() -> None:
    quota = classify_error("t", _error(429, "QUOTA_EXCEEDED", headers={"Retry-After": "30"}))
    assert (quota.outcome, quota.error, quota.retry_after_seconds) == (
        "transient",
        "QUOTA_EXCEEDED",
        30.0,
    )
    down = classify_error("t", FcmAnswer(502, {}, {}))
    assert (down.outcome, down.error, down.retry_after_seconds) == ("transient", "502", None)


def test_sender_id_mismatch_is_a_permanent_refusal_that_keeps_the_token() -> None:
    result = classify_error("t", _error(403, "SENDER_ID_MISMATCH"))
    assert (result.outcome, result.dead_token) == ("rejected", False)


def test_fingerprint_hides_the_token() -> None:
    token = "fcm-token-" + "x" * 100
    assert token not in fingerprint(token) and len(fingerprint(token)) == 12
    assert fingerprint(token) == fingerprint(token)
