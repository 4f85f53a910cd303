"""`python -m services.user_service`: serve the user service on `USER_SERVICE_PORT`."""

from __future__ import annotations

from services.user_service.app import SERVICE, create_app
from services.user_service.settings import user_service_settings
from services.user_service.tokens import SigningKeyError, load_signing_keys
from shared.http import serve
from shared.settings import ConfigurationRefused


def main() -> None:
    settings = user_service_settings()
    try:
        keys = load_signing_keys(settings)
    except SigningKeyError as exc:
        raise ConfigurationRefused(f"refusing to start: {exc}") from None
    app = create_app(settings, keys=keys)
    serve(app, service=SERVICE, settings=settings, port=settings.user_service_port)


if __name__ == "__main__":
    main()
