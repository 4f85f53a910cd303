"""`python -m services.push_service`: the push worker (consumer + HTTP side) on `PUSH_SERVICE_PORT`."""

from __future__ import annotations

from services.push_service.app import SERVICE, create_app
from services.push_service.settings import push_settings
from shared.http import serve


def main() -> None:
    settings = push_settings()
    serve(create_app(settings), service=SERVICE, settings=settings, port=settings.push_service_port)


if __name__ == "__main__":
    main()
