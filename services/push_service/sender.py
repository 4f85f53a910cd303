"""The push channel's `Sender`: render the pinned version, fan out to devices, decide.

One `messages:send` per device token, concurrently (bounded by the FCM client). Each round
is recorded per device, so a retry sends only to devices that have not accepted yet (nor
refused for good). Dead tokens (UNREGISTERED, or INVALID_ARGUMENT blamed on the token) are
removed through the user service.

The outcome: transient failures on some devices -> `TransientFailure` (with FCM's
Retry-After) while attempts remain, so those devices get another try; otherwise `delivered`
when at least one device accepted, `PermanentFailure` when none can.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from typing import Protocol

from services.push_service.devices import DeviceRegistry
from services.push_service.fcm import FcmAuthError, FcmClient, SendResult, fingerprint
from services.push_service.payload import PushContent, build_message, content_from_rendered
from shared.messaging.delivery import (
    Attempt,
    DeliveryResult,
    PermanentFailure,
    TemplateSource,
    TransientFailure,
    is_outage,
    render_message,
    retry_in_place,
)
from shared.messaging.message import DeviceTarget, NotificationMessage
from shared.notification_status import DeviceRecord, DeviceResult, DeviceStatus

logger = logging.getLogger("services.push_service.sender")


class DeviceResultStore(Protocol):
    """Where the per-device results live (`shared.notification_status.StatusStore`)."""

    async def device_results(self, notification_id: uuid.UUID) -> dict[str, DeviceRecord]: ...

    async def record_device_results(
        self, notification_id: uuid.UUID, token: uuid.UUID, results: Sequence[DeviceResult]
    ) -> None: ...


class PushSender:
    def __init__(
        self,
        *,
        fcm: FcmClient,
        templates: TemplateSource,
        results: DeviceResultStore,
        registry: DeviceRegistry,
        record_retry_seconds: float,
    ) -> None:
        self.fcm = fcm
        self.templates = templates
        self.results = results
        self.registry = registry
        self.record_retry_seconds = record_retry_seconds

    async def aclose(self) -> None:
        """Called by the worker runtime after the last message in hand is finished."""
        await self.fcm.aclose()
        await self.registry.aclose()
        await self.templates.aclose()

    async def probe(self) -> bool:
        return await self.fcm.probe()

    async def deliver(self, message: NotificationMessage, attempt: Attempt) -> DeliveryResult:
        devices = list({d.token: d for d in message.recipient.devices}.values())
        if not devices:
            raise PermanentFailure("no_devices: the recipient has no push device")
        previous = await self.results.device_results(message.notification_id)
        todo = [d for d in devices if d.token not in previous or not previous[d.token].settled]
        results = await self._send_round(message, attempt, todo) if todo else []
        targets = {d.token for d in devices}
        accepted = [
            record.provider_message_id or ""
            for token, record in previous.items()
            if record.status is DeviceStatus.ACCEPTED and token in targets
        ] + [r.name or "" for r in results if r.outcome == "accepted"]
        return _decide(len(devices), results, accepted)

    async def _send_round(
        self, message: NotificationMessage, attempt: Attempt, devices: Sequence[DeviceTarget]
    ) -> list[SendResult]:
        """Send to these devices, record every result, remove the dead tokens.

        Once FCM has accepted any device nothing may raise into a resend, so the record is
        retried in place through database outages.
        """
        content = await self._content(message)
        try:
            await self.fcm.tokens.token()  # fail before the fan-out, not inside it
        except FcmAuthError as exc:
            raise TransientFailure(f"fcm_auth: {exc}", provider_down=True) from exc
        results = await self._send_all(message, attempt, devices, content)
        rows = [r.as_device_result() for r in results]
        await retry_in_place(
            lambda: self.results.record_device_results(
                message.notification_id, attempt.token, rows
            ),
            seconds=self.record_retry_seconds,
            is_outage=is_outage,
        )
        dead = [r.token for r in results if r.dead_token]
        if dead:
            await self.registry.remove_many(dead)
        return results

    async def _content(self, message: NotificationMessage) -> PushContent:
        return content_from_rendered(
            await render_message(self.templates, message), message.variables
        )

    async def _send_all(
        self,
        message: NotificationMessage,
        attempt: Attempt,
        devices: Sequence[DeviceTarget],
        content: PushContent,
    ) -> list[SendResult]:
        sends = [
            self.fcm.send(
                device.token,
                build_message(
                    content,
                    platform=device.platform,
                    priority=message.priority,
                    notification_id=str(message.notification_id),
                    expires_in_seconds=attempt.expires_in_seconds,
                ),
            )
            for device in devices
        ]
        results = list(await asyncio.gather(*sends))
        for result in results:
            if result.outcome != "accepted":
                logger.warning(
                    "device %s: %s (%s)", fingerprint(result.token), result.outcome, result.error
                )
        return results


def _decide(total: int, results: Sequence[SendResult], accepted: Sequence[str]) -> DeliveryResult:
    """Delivered once no device is left pending and one accepted; retried while some are
    pending (delivered if the budget runs out with one accepted); failed if none can accept."""
    pending = [r for r in results if r.device_status is DeviceStatus.PENDING]
    summary = _summary(results) or "refused on an earlier attempt"
    delivered = (
        DeliveryResult(
            provider_message_id=accepted[0] or None,
            detail=f"accepted by {len(accepted)} of {total} devices"
            + (f"; the others: {summary}" if len(accepted) < total else ""),
        )
        if accepted
        else None
    )
    if pending:
        waits = [r.retry_after_seconds for r in pending if r.retry_after_seconds is not None]
        raise TransientFailure(
            f"{len(pending)} of {total} devices failed transiently ({summary})",
            retry_after_seconds=max(waits) if waits else None,
            provider_down=len(pending) == len(results),
            partial=delivered,
        )
    if delivered is not None:
        return delivered
    raise PermanentFailure(f"no device accepted: {summary}")


def _summary(results: Sequence[SendResult]) -> str:
    """`UNREGISTERED x2, UNAVAILABLE x1`: why devices did not accept, without their tokens."""
    counts: dict[str, int] = {}
    for result in results:
        if result.outcome != "accepted":
            key = result.error or result.outcome
            counts[key] = counts.get(key, 0) + 1
    return ", ".join(f"{code} x{n}" for code, n in sorted(counts.items()))
