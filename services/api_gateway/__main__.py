"""`python -m services.api_gateway`: serve the gateway on `api_gateway_port`."""

from __future__ import annotations

import uvicorn

from services.api_gateway.app import create_app
from services.api_gateway.settings import GatewaySettings
from shared.logging import setup_logging


def main() -> None:
    settings = GatewaySettings()
    setup_logging("api_gateway", settings.log_level, settings.log_format)
    uvicorn.run(
        create_app(settings),
        host=settings.bind_host,
        port=settings.api_gateway_port,
        log_config=None,
        access_log=False,
    )


if __name__ == "__main__":
    main()
