"""The email worker's app: the shared worker runtime plus the SMTP sender and `/test-email`."""

from __future__ import annotations

from fastapi import FastAPI

from services.email_service.routes import router
from services.email_service.sender import EmailSender
from services.email_service.smtp_pool import SmtpPool
from shared.messaging.delivery import TemplateSource
from shared.messaging.message import Channel
from shared.messaging.worker import create_worker_app
from shared.settings import Settings, get_settings
from shared.suppressions import SuppressionList
from shared.template_client import TemplateClient

SERVICE = "email_service"


def create_app(
    settings: Settings | None = None, *, templates: TemplateSource | None = None
) -> FastAPI:
    """`templates` replaces the template service client (tests pass a stand-in)."""
    settings = settings or get_settings()

    def build_sender(settings: Settings, app: FastAPI) -> EmailSender:
        pool = SmtpPool(settings)  # raises on contradictory SMTP settings: fail at start
        suppressions = SuppressionList(app.state.status_store.db)
        return EmailSender(settings, templates or TemplateClient(settings), pool, suppressions)

    return create_worker_app(
        service=SERVICE,
        channel=Channel.EMAIL,
        settings=settings,
        sender_factory=build_sender,
        extra_routers=[router],
        title="Email service",
        description="Consumes email.queue, renders the pinned template and sends it over SMTP. "
        "Admin: the dead-letter queue (internal key).",
        health_paths=("/", "/health"),
    )
