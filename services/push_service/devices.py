"""Removing dead device tokens through the user service's internal API.

Best effort on purpose: a token FCM called dead stays dead, so if the user service is down
the next notification to that user meets the same answer and tries the removal again. A
failed removal is logged and counted, never allowed to fail the delivery.

The token goes in the request body, not the URL: an HTTP client logs the URLs it calls (httpx
does, at INFO) and servers and proxies log the paths they serve, so a token in a URL ends up
in somebody's log. Our own lines carry only its fingerprint.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

import httpx

from services.push_service.fcm import fingerprint
from shared.http_client import create_http_client, internal_headers
from shared.metrics import DEPENDENCY_FAILURES
from shared.settings import Settings

logger = logging.getLogger("services.push_service.devices")

REMOVE_PATH = "/internal/v1/devices/remove"


class DeviceRegistry:
    def __init__(self, settings: Settings, client: httpx.AsyncClient | None = None) -> None:
        self._client = client or create_http_client(
            settings, base_url=settings.user_service_url, headers=internal_headers(settings)
        )
        DEPENDENCY_FAILURES.labels("push_service", "user_service")  # a zero series from the start

    async def aclose(self) -> None:
        await self._client.aclose()

    async def remove_many(self, tokens: Iterable[str]) -> None:
        await asyncio.gather(*(self.remove(token) for token in tokens))

    async def remove(self, token: str) -> bool:
        """Ask the user service to forget `token`; True when it answered 2xx."""
        try:
            response = await self._client.post(REMOVE_PATH, json={"token": token})
        except httpx.HTTPError as exc:
            DEPENDENCY_FAILURES.labels("push_service", "user_service").inc()
            logger.warning(
                "could not remove dead token %s: user service unreachable (%s)",
                fingerprint(token),
                type(exc).__name__,
            )
            return False
        if response.is_success:
            logger.info("removed dead device token %s", fingerprint(token))
            return True
        DEPENDENCY_FAILURES.labels("push_service", "user_service").inc()
        logger.warning(
            "could not remove dead token %s: user service answered %d",
            fingerprint(token),
            response.status_code,
        )
        return False
