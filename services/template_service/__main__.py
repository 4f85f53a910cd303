"""`python -m services.template_service`: serve the template service on `TEMPLATE_SERVICE_PORT`."""

from __future__ import annotations

import uvicorn

from services.template_service.app import SERVICE, create_app
from services.template_service.settings import template_settings
from shared.logging import setup_logging


def main() -> None:
    settings = template_settings()
    setup_logging(SERVICE, settings.log_level, settings.log_format)
    uvicorn.run(
        create_app(settings),
        host=settings.bind_host,
        port=settings.template_service_port,
        log_config=None,
        access_log=False,
    )


if __name__ == "__main__":
    main()
