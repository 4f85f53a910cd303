"""`python -m services.template_service`: serve the template service on `TEMPLATE_SERVICE_PORT`."""

from __future__ import annotations

from services.template_service.app import SERVICE, create_app
from services.template_service.settings import template_settings
from shared.http import serve


def main() -> None:
    settings = template_settings()
    serve(
        create_app(settings),
        service=SERVICE,
        settings=settings,
        port=settings.template_service_port,
    )


if __name__ == "__main__":
    main()
