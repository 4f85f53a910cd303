"""Checking that a webhook delivery came from the gateway, with the `standardwebhooks` package.

Deliveries follow the Standard Webhooks specification: headers `webhook-id`,
`webhook-timestamp` and `webhook-signature` (`v1,<base64 HMAC-SHA256>`), body
`{type, timestamp, data}`. The signature and a five-minute timestamp window are checked by
the specification's own library rather than by code of ours. Install it with
`pip install 'notifications-client[webhooks]'`; the rest of the client does not need it.

    verifier = WebhookVerifier(os.environ["WEBHOOK_SECRET"])
    event = verifier.verify(request_body_bytes, request.headers)  # raises if forged or stale
    if event.type == "notification.delivered": ...

Keep the raw body: verify the bytes as received, before any JSON parsing.
"""

from __future__ import annotations

import binascii
from collections.abc import Iterable, Mapping

from pydantic import ValidationError

from notifications_client.errors import WebhookVerificationFailed
from notifications_client.models import WebhookEvent

try:
    from standardwebhooks import Webhook, WebhookVerificationError
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "verifying webhooks needs the standardwebhooks package: "
        "pip install 'notifications-client[webhooks]'"
    ) from exc


class WebhookVerifier:
    """Verifies deliveries signed with any of `secrets` (`whsec_...`).

    Pass both secrets while you roll a rotated one out to your receivers; the gateway signs
    with the old and the new secret alongside for a while, so either one verifies.
    """

    def __init__(self, secrets: str | Iterable[str]) -> None:
        values = [secrets] if isinstance(secrets, str) else list(secrets)
        if not values:
            raise ValueError("at least one webhook secret is required")
        self._webhooks = [Webhook(secret) for secret in values]

    def verify(self, payload: bytes | str, headers: Mapping[str, str]) -> WebhookEvent:
        """The event, once its signature and timestamp check out; otherwise raises
        `WebhookVerificationFailed` (answer the delivery with a 4xx and drop it)."""
        plain = {key.lower(): value for key, value in headers.items()}
        reason = "no secret matched the signature"
        for webhook in self._webhooks:
            try:
                body = webhook.verify(payload, plain)
            except WebhookVerificationError as exc:
                reason = str(exc) or reason
                continue
            except (ValueError, binascii.Error) as exc:  # a malformed signature header
                raise WebhookVerificationFailed(
                    f"malformed webhook headers: {exc}", code="invalid_signature"
                ) from exc
            try:
                return WebhookEvent.model_validate(body)
            except ValidationError as exc:
                raise WebhookVerificationFailed(
                    "a signed delivery that is not an event", code="invalid_event"
                ) from exc
        raise WebhookVerificationFailed(reason, code="invalid_signature")
