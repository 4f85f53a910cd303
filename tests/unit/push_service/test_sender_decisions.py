"""The sender's decisions, with in-memory stand-ins for FCM, the results table and the registry.

What is pinned here: which devices a retry sends to, and when the answer is delivered, retry
or failed. The real wiring (RabbitMQ, PostgreSQL, the FCM stand-in) is in the integration
tests.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from services.push_service.fcm import SendResult
from services.push_service.sender import PushSender
from shared.contracts import TemplateVersion
from shared.messaging.delivery import Attempt, DeliveryResult, PermanentFailure, TransientFailure
from shared.messaging.message import (
    Channel,
    DeviceTarget,
    NotificationMessage,
    Recipient,
    TemplateRef,
)
from shared.notification_status import DeviceRecord, DeviceResult

VERSION = TemplateVersion(
    code="welcome", channel="push", locale="en", version=1, name="w", title="Hi", body="B"
)


class Templates:
    async def get_version(self, *_: Any) -> TemplateVersion:
        return VERSION

    async def aclose(self) -> None:
        return None


@dataclass
class Tokens:
    async def token(self) -> str:
        return "access"


@dataclass
class Fcm:
    answers: dict[str, SendResult]
    tokens: Tokens = field(default_factory=Tokens)
    sent: list[str] = field(default_factory=list)

    async def send(self, token: str, message: dict[str, Any]) -> SendResult:
        self.sent.append(token)
        return self.answers.get(token) or SendResult(token, "accepted", name=f"n/{token}")


@dataclass
class Results:
    rows: dict[str, DeviceRecord] = field(default_factory=dict)

    async def device_results(self, _: uuid.UUID) -> dict[str, DeviceRecord]:
        return dict(self.rows)

    async def record_device_results(
        self, _: uuid.UUID, __: uuid.UUID, results: Sequence[DeviceResult]
    ) -> None:
        for r in results:
            if r.token not in self.rows or self.rows[r.token].status.value != "accepted":
                self.rows[r.token] = DeviceRecord(r.status, r.provider_message_id)


@dataclass
class Registry:
    removed: list[str] = field(default_factory=list)

    async def remove_many(self, tokens: Sequence[str]) -> None:
        self.removed += tokens


def _message(*tokens: str, attempt: int = 1) -> NotificationMessage:
    return NotificationMessage(
        notification_id=uuid.uuid4(),
        notification_type=Channel.PUSH,
        user_id=uuid.uuid4(),
        recipient=Recipient(devices=[DeviceTarget(token=t) for t in tokens]),
        template=TemplateRef(code="welcome", version=1, locale="en"),
        correlation_id="c",
        created_at=datetime.now(UTC),
        attempt=attempt,
    )


def _sender(fcm: Fcm, results: Results, registry: Registry) -> PushSender:
    return PushSender(
        fcm=fcm,  # type: ignore[arg-type]
        templates=Templates(),
        results=results,  # type: ignore[arg-type]
        registry=registry,  # type: ignore[arg-type]
        record_retry_seconds=1.0,
    )


def _attempt(message: NotificationMessage) -> Attempt:
    return Attempt(message.notification_id, uuid.uuid4(), message.attempt)


async def _deliver(sender: PushSender, message: NotificationMessage) -> DeliveryResult:
    return await sender.deliver(message, _attempt(message))


def _busy(token: str, after: float | None) -> SendResult:
    return SendResult(token, "transient", error="UNAVAILABLE", retry_after_seconds=after)


async def test_transient_device_means_retry_with_the_longest_retry_after() -> None:
    fcm = Fcm({"b": _busy("b", 2.0), "c": _busy("c", 5.0)})
    with pytest.raises(TransientFailure) as caught:
        await _deliver(_sender(fcm, Results(), Registry()), _message("a", "b", "c"))
    assert caught.value.retry_after_seconds == 5.0
    assert "2 of 3 devices" in caught.value.reason
    # One device accepted: FCM answers, so this is not a provider outage.
    assert not caught.value.provider_down


async def test_retry_sends_only_to_devices_not_settled() -> None:
    results = Results()
    fcm = Fcm({"b": _busy("b", None)})
    sender = _sender(fcm, results, Registry())
    message = _message("a", "b", "dead")
    fcm.answers["dead"] = SendResult("dead", "unregistered", error="UNREGISTERED")
    with pytest.raises(TransientFailure):
        await _deliver(sender, message)
    fcm.answers.clear()
    fcm.sent.clear()
    outcome = await _deliver(sender, message.next_attempt())
    assert fcm.sent == ["b"]
    assert outcome.detail == "accepted by 2 of 3 devices; the others: refused on an earlier attempt"


async def test_a_pending_device_retries_and_offers_what_was_accepted_if_time_runs_out() -> None:
    fcm = Fcm({"b": _busy("b", None)})
    with pytest.raises(TransientFailure) as caught:
        await _deliver(_sender(fcm, Results(), Registry()), _message("a", "b", attempt=3))
    partial = caught.value.partial
    assert partial is not None and partial.provider_message_id == "n/a"
    assert partial.detail == "accepted by 1 of 2 devices; the others: UNAVAILABLE x1"


async def test_every_device_failing_transiently_is_a_provider_outage_with_nothing_partial() -> None:
    fcm = Fcm({"a": _busy("a", None)})
    with pytest.raises(TransientFailure) as caught:
        await _deliver(_sender(fcm, Results(), Registry()), _message("a", attempt=3))
    assert caught.value.provider_down and caught.value.partial is None


async def test_every_device_refused_is_permanent_and_dead_tokens_are_removed() -> None:
    fcm = Fcm(
        {
            "x": SendResult("x", "invalid_token", error="INVALID_ARGUMENT"),
            "y": SendResult("y", "rejected", error="SENDER_ID_MISMATCH"),
        }
    )
    registry = Registry()
    with pytest.raises(PermanentFailure, match="INVALID_ARGUMENT x1, SENDER_ID_MISMATCH x1"):
        await _deliver(_sender(fcm, Results(), registry), _message("x", "y"))
    assert registry.removed == ["x"]


async def test_no_devices_is_permanent_without_sending() -> None:
    fcm = Fcm({})
    with pytest.raises(PermanentFailure, match="no_devices"):
        await _deliver(_sender(fcm, Results(), Registry()), _message())
    assert fcm.sent == []


async def test_a_redelivery_after_everything_was_sent_sends_nothing() -> None:
    results = Results({"a": DeviceRecord(SendResult("a", "accepted").device_status, "n/a")})
    fcm = Fcm({})
    outcome = await _deliver(_sender(fcm, results, Registry()), _message("a"))
    assert (fcm.sent, outcome.provider_message_id) == ([], "n/a")
