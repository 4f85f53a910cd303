"""One logger setup: JSON lines on stdout, each carrying the service name and the correlation id.

The correlation id lives in a context variable: the HTTP middleware sets it from
`X-Correlation-ID` (or makes one), the publisher copies it into the message, and the consumer
runtime sets it again before handling a message, so one id follows a notification end to end.
"""

from __future__ import annotations

import hashlib
import logging
import sys
import uuid
from contextvars import ContextVar

from pythonjsonlogger.json import JsonFormatter

CORRELATION_HEADER = "X-Correlation-ID"

correlation_id_var: ContextVar[str | None] = ContextVar("correlation_id", default=None)


def new_correlation_id() -> str:
    return uuid.uuid4().hex


def get_correlation_id() -> str | None:
    return correlation_id_var.get()


def fingerprint(secret: str) -> str:
    """What a log line may say about a secret (a device token, an API key): 12 hex characters
    of its SHA-256, enough to match two lines, useless to anyone who reads them."""
    return hashlib.sha256(secret.encode()).hexdigest()[:12]


def clean_correlation_id(raw: str | None) -> str:
    """Accept a caller's id only if it is short printable ASCII; otherwise make one.

    The id ends up in logs and headers, so it must not smuggle newlines or megabytes.
    """
    if raw and len(raw) <= 128 and raw.isascii() and raw.isprintable() and " " not in raw:
        return raw
    return new_correlation_id()


class _ContextFilter(logging.Filter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        record.correlation_id = correlation_id_var.get()
        return True


def setup_logging(service: str, level: str = "INFO", fmt: str = "json") -> None:
    """Configure the root logger once per process. Safe to call again (it replaces handlers)."""
    handler = logging.StreamHandler(sys.stdout)
    if fmt == "json":
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s %(service)s %(correlation_id)s",
                rename_fields={"asctime": "timestamp", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(
            logging.Formatter(
                "%(asctime)s %(levelname)s [%(service)s %(correlation_id)s] %(name)s: %(message)s"
            )
        )
    handler.addFilter(_ContextFilter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Access logs repeat what the metrics middleware counts; keep them at warning.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    logging.getLogger("aio_pika").setLevel(logging.WARNING)
    logging.getLogger("aiormq").setLevel(logging.WARNING)
