"""`python -m services.user_service`: serve the user service on `USER_SERVICE_PORT`."""

from __future__ import annotations

import uvicorn

from services.user_service.app import SERVICE, create_app
from services.user_service.settings import user_service_settings
from shared.logging import setup_logging


def main() -> None:
    settings = user_service_settings()
    setup_logging(SERVICE, settings.log_level, settings.log_format)
    uvicorn.run(
        create_app(settings),
        host=settings.bind_host,
        port=settings.user_service_port,
        log_config=None,
        access_log=False,
    )


if __name__ == "__main__":
    main()
