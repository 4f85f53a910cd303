"""The email worker's own HTTP route: send one test message directly (internal key only).

Guarded by the internal key because an unauthenticated test endpoint would be an open relay.
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from services.email_service.compose import OutgoingEmail, message_id_for
from services.email_service.sender import EmailSender, provider_id
from shared.auth import InternalKey
from shared.envelope import ErrorEnvelope, ok
from shared.errors import AppError, DependencyUnavailable, ValidationFailed
from shared.messaging.delivery import PermanentFailure, TransientFailure

router = APIRouter(tags=["email"])


class TestEmail(BaseModel):
    to: str = Field(min_length=3, max_length=254, description="recipient address")
    to_name: str | None = Field(default=None, max_length=200)
    subject: str = Field(default="Test email", min_length=1, max_length=998)
    text: str = Field(default="This is a test email from the notification service.")
    html: str | None = None


class SmtpRejected(AppError):
    status_code, code, message = 502, "smtp_rejected", "the SMTP server refused the message"


@router.post(
    "/test-email",
    summary="Send one email directly (internal key)",
    responses={
        400: {"model": ErrorEnvelope, "description": "malformed JSON (`invalid_json`)"},
        401: {"model": ErrorEnvelope, "description": "`invalid_internal_key`"},
        413: {"model": ErrorEnvelope, "description": "body over the size limit"},
        422: {
            "model": ErrorEnvelope,
            "description": "invalid input (`validation_error`, `invalid_email`)",
        },
        502: {
            "model": ErrorEnvelope,
            "description": "the SMTP server refused it (`smtp_rejected`)",
        },
        503: {
            "model": ErrorEnvelope,
            "description": "no SMTP server or no sender running (`smtp_unavailable`, "
            "`dependency_unavailable`)",
        },
    },
)
async def send_test_email(body: TestEmail, request: Request, _: InternalKey) -> dict[str, Any]:
    sender: EmailSender | None = getattr(request.app.state, "sender", None)
    if sender is None:
        raise DependencyUnavailable("the email sender is not running")
    settings = sender.settings
    outgoing = OutgoingEmail(
        from_address=settings.email_from_address,
        from_name=settings.email_from_name,
        to_address=body.to,
        to_name=body.to_name,
        subject=body.subject,
        text=body.text,
        html=body.html,
        message_id=message_id_for(uuid.uuid4(), settings.email_from_address),
    )
    try:
        reply = await sender.send(outgoing)
    except PermanentFailure as exc:
        if "SMTP" in exc.reason or "recipient refused" in exc.reason:
            raise SmtpRejected(exc.reason) from exc
        raise ValidationFailed(exc.reason, code="invalid_email") from exc
    except TransientFailure as exc:
        raise DependencyUnavailable(exc.reason, code="smtp_unavailable") from exc
    return ok(
        {"message_id": outgoing.message_id.strip("<>"), "provider_message_id": provider_id(reply)},
        message="sent",
    )
