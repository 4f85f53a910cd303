"""`python -m services.email_service`: the email worker (consumer + HTTP side) on `EMAIL_SERVICE_PORT`."""

from __future__ import annotations

from services.email_service.app import SERVICE, create_app
from shared.http import serve
from shared.settings import get_settings


def main() -> None:
    settings = get_settings()
    serve(
        create_app(settings), service=SERVICE, settings=settings, port=settings.email_service_port
    )


if __name__ == "__main__":
    main()
