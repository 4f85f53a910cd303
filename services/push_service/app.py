"""The push service: the shared worker runtime on `push.queue`, with FCM HTTP v1 as its sender.

The HTTP side (`GET /health`, `/metrics`, the `/admin/dlq` routes) comes from
`shared.messaging.worker`; this module only builds the sender and its clients in the lifespan.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from fastapi import FastAPI

from services.push_service.credentials import service_account_info
from services.push_service.devices import DeviceRegistry
from services.push_service.fcm import AccessTokenSource, FcmClient
from services.push_service.sender import PushSender
from services.push_service.settings import push_settings
from shared.messaging.delivery import TemplateSource
from shared.messaging.message import Channel
from shared.messaging.worker import create_worker_app
from shared.settings import Settings

SERVICE = "push_service"

logger = logging.getLogger("services.push_service")


def _sender_factory(
    templates: TemplateSource | None,
) -> Callable[[Settings, FastAPI], Awaitable[PushSender]]:
    async def build(settings: Settings, app: FastAPI) -> PushSender:
        config = push_settings(settings)
        tokens = AccessTokenSource(
            service_account_info(config),
            timeout_seconds=config.fcm_token_timeout_seconds,
        )
        fcm = FcmClient(
            base_url=config.fcm_base_url,
            project_id=config.fcm_project_id or tokens.project_id or "",
            tokens=tokens,
            concurrency=config.fcm_concurrency,
            timeout_seconds=config.fcm_timeout_seconds,
        )
        if templates is None:
            from shared.template_client import TemplateClient

            template_source: TemplateSource = TemplateClient(config)
        else:
            template_source = templates
        app.state.fcm = fcm
        return PushSender(
            fcm=fcm,
            templates=template_source,
            results=app.state.status_store,
            registry=DeviceRegistry(config),
            record_retry_seconds=config.status_write_retry_seconds,
        )

    return build


def create_app(
    settings: Settings | None = None, *, templates: TemplateSource | None = None
) -> FastAPI:
    """The push worker. `templates` replaces the template service client (tests pass a fake)."""
    return create_worker_app(
        service=SERVICE,
        channel=Channel.PUSH,
        settings=push_settings(settings),
        sender_factory=_sender_factory(templates),
        title="Push service",
        description=(
            "Consumes `push.queue` and delivers over FCM HTTP v1: one messages:send per device, "
            "per-device results, dead tokens removed, retries through delay queues."
        ),
    )
