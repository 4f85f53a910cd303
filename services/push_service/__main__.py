"""`python -m services.push_service`: the push worker (consumer + HTTP side) on
`PUSH_SERVICE_PORT`."""

from __future__ import annotations

import uvicorn

from services.push_service.app import SERVICE, create_app
from services.push_service.settings import push_settings
from shared.logging import setup_logging


def main() -> None:
    settings = push_settings()
    setup_logging(SERVICE, settings.log_level, settings.log_format)
    uvicorn.run(
        create_app(settings),
        host=settings.bind_host,
        port=settings.push_service_port,
        log_config=None,
        access_log=False,
    )


if __name__ == "__main__":
    main()
