"""Container health check: GET the health URL of whatever $SERVICE runs; exit 0 only on 200.

Ports come from the same `Settings` the service reads, so a `*_PORT` override moves the probe
too. Standard library plus our settings only: the runtime image has no curl.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

from shared.settings import Settings

HEALTH_PATHS = {
    "api_gateway": ("api_gateway_port", "/health"),
    "user_service": ("user_service_port", "/api/v1/health"),
    "template_service": ("template_service_port", "/api/v1/health"),
    "email_service": ("email_service_port", "/health"),
    "push_service": ("push_service_port", "/health"),
    "fcm_standin": ("fcm_standin_port", "/health"),
    "smtp_inbox": ("inbox_http_port", "/api/v1/messages"),
}


def health_url(service: str, settings: Settings) -> str:
    port_field, path = HEALTH_PATHS[service]
    return f"http://127.0.0.1:{getattr(settings, port_field)}{path}"


def main() -> int:
    service = os.environ.get("SERVICE", "")
    if service not in HEALTH_PATHS:
        print(f"healthcheck: no health endpoint for SERVICE={service!r}", file=sys.stderr)
        return 1
    url = health_url(service, Settings())
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"healthcheck: {url} failed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
