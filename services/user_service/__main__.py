"""`python -m services.user_service`: serve the user service on `USER_SERVICE_PORT`."""

from __future__ import annotations

from services.user_service.app import SERVICE, create_app
from services.user_service.settings import user_service_settings
from shared.http import serve


def main() -> None:
    settings = user_service_settings()
    serve(create_app(settings), service=SERVICE, settings=settings, port=settings.user_service_port)


if __name__ == "__main__":
    main()
