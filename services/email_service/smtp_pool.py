"""A bounded pool of reused SMTP connections.

A new connection per message costs more than half the throughput (~420 vs ~900+ msg/s,
docs/measurements.md), so connections are kept and reused, at most `smtp_pool_size` at once;
senders beyond that wait for a free one. A connection that failed in any way is closed rather
than reused. A reused connection the server has meanwhile dropped is retried once on a fresh
one, but only if the message was not handed over yet: once `DATA` began, a lost connection or
a timeout leaves the outcome unknown (`OutcomeUnknown`), since the server may have taken it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from email.message import Message
from typing import Any

import aiosmtplib

from shared.settings import Settings

logger = logging.getLogger("services.email_service.smtp_pool")

IMPLICIT_TLS_PORT = 465


class SmtpConfigError(ValueError):
    """The SMTP settings contradict each other; the worker refuses to start with them."""


class OutcomeUnknown(Exception):
    """The connection failed after `DATA` began: the server may or may not have the message."""


class _TrackedSMTP(aiosmtplib.SMTP):
    """An SMTP client that notes when the message itself starts to go out."""

    data_started = False

    async def data(self, message: str | bytes, *args: Any, **kwargs: Any) -> Any:
        self.data_started = True
        return await super().data(message, *args, **kwargs)


def connection_options(settings: Settings) -> dict[str, Any]:
    """aiosmtplib keyword arguments for the configured security mode.

    `start_tls` is always explicit: aiosmtplib would otherwise upgrade whenever the server
    offers it, and never STARTTLS on 465, the implicit-TLS port.
    """
    security = settings.smtp_security
    if security == "starttls" and settings.smtp_port == IMPLICIT_TLS_PORT:
        raise SmtpConfigError(
            "SMTP_SECURITY=starttls on port 465: port 465 is implicit TLS (use SMTP_SECURITY=tls)"
        )
    if (settings.smtp_username is None) != (settings.smtp_password is None):
        raise SmtpConfigError("set both SMTP_USERNAME and SMTP_PASSWORD, or neither")
    options: dict[str, Any] = {
        "hostname": settings.smtp_host,
        "port": settings.smtp_port,
        "timeout": settings.smtp_timeout_seconds,
        "use_tls": security == "tls",
        "start_tls": security == "starttls",
    }
    if settings.smtp_username is not None and settings.smtp_password is not None:
        options["username"] = settings.smtp_username
        options["password"] = settings.smtp_password.get_secret_value()
    return options


class SmtpPool:
    def __init__(self, settings: Settings) -> None:
        self._options = connection_options(settings)
        self._idle: deque[_TrackedSMTP] = deque()
        self._slots = asyncio.Semaphore(max(1, settings.smtp_pool_size))
        self.connections_opened = 0
        local = settings.smtp_host in ("127.0.0.1", "localhost", "::1")
        if settings.smtp_username and settings.smtp_security == "none" and not local:
            logger.warning("SMTP credentials will cross the network unencrypted")

    async def send(self, message: Message, *, sender: str, recipient: str) -> str:
        """Send one message; the server's final reply text. Raises aiosmtplib errors, or
        `OutcomeUnknown` when the connection failed after the message was handed over."""
        async with self._slots:
            client = self._idle.pop() if self._idle else None
            reused = client is not None and client.is_connected
            if client is not None and not reused:
                await _close(client)
                client = None
            try:
                client = client or await self._connect()
                try:
                    reply = await self._send_on(client, message, sender, recipient)
                except (aiosmtplib.SMTPServerDisconnected, ConnectionError):
                    if not reused or client.data_started:
                        raise
                    # The server closed an idle connection; nothing was accepted on it.
                    await _close(client)
                    client = await self._connect()
                    reply = await self._send_on(client, message, sender, recipient)
            except (aiosmtplib.SMTPServerDisconnected, ConnectionError, TimeoutError) as exc:
                if client is not None:
                    await _close(client)
                if client is not None and client.data_started:
                    raise OutcomeUnknown(f"{type(exc).__name__} after DATA") from exc
                raise
            except BaseException:
                if client is not None:
                    await _close(client)
                raise
            self._idle.append(client)
            return reply

    async def probe(self) -> bool:
        """Whether the server takes a connection and answers EHLO and NOOP."""
        client = await self._connect()
        try:
            await client.noop()
        finally:
            await _close(client)
        return True

    @staticmethod
    async def _send_on(client: _TrackedSMTP, message: Message, sender: str, recipient: str) -> str:
        client.data_started = False
        _, reply = await client.send_message(message, sender=sender, recipients=[recipient])
        return reply

    async def _connect(self) -> _TrackedSMTP:
        client = _TrackedSMTP(**self._options)
        await client.connect()
        self.connections_opened += 1
        return client

    async def aclose(self) -> None:
        while self._idle:
            client = self._idle.pop()
            try:
                await asyncio.wait_for(client.quit(), 2)
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                await _close(client)


async def _close(client: aiosmtplib.SMTP) -> None:
    try:
        client.close()
    except Exception as exc:  # closing a broken connection may complain; it is gone anyway
        logger.debug("closing an SMTP connection failed: %s", type(exc).__name__)
