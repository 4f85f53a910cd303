"""`python -m services.api_gateway`: serve the gateway on `API_GATEWAY_PORT`."""

from __future__ import annotations

from services.api_gateway.app import create_app
from services.api_gateway.settings import GatewaySettings
from shared.http import serve
from shared.settings import load_settings


def main() -> None:
    settings = load_settings(GatewaySettings)
    serve(
        create_app(settings),
        service="api_gateway",
        settings=settings,
        port=settings.api_gateway_port,
    )


if __name__ == "__main__":
    main()
