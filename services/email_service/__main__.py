"""`python -m services.email_service`: the HTTP side and the consumer in one process."""

from __future__ import annotations

import uvicorn

from services.email_service.app import SERVICE, create_app
from shared.logging import setup_logging
from shared.settings import get_settings


def main() -> None:
    settings = get_settings()
    setup_logging(SERVICE, settings.log_level, settings.log_format)
    uvicorn.run(
        create_app(settings),
        host=settings.bind_host,
        port=settings.email_service_port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(settings.worker_shutdown_seconds) + 5,
    )


if __name__ == "__main__":
    main()
