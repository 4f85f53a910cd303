"""One logger setup: JSON lines on stdout, each carrying the service name and the correlation id,
and the trace id (`trace_id`) when the line is written inside a span (`shared/tracing.py`).

The correlation id lives in a context variable: the HTTP middleware sets it from
`X-Correlation-ID` (or makes one), the publisher copies it into the message, and the consumer
runtime sets it again before handling a message, so one id follows a notification end to end.

No secret may reach a log line, at any level. Our code logs device tokens only as fingerprints
and never logs credentials, message bodies or request bodies. Libraries are held where they
would not: httpx and httpcore log every URL and header exchange at INFO/DEBUG, aio-pika and
aiormq log frames, SQLAlchemy logs statement parameters; they stay at WARNING whatever
`LOG_LEVEL` says (and SQLAlchemy hides parameters, `shared/db.py`). As a last net, every
formatted line passes `redact()`, which masks bearer credentials, JWTs, API-key headers and
passwords inside URLs.
"""

from __future__ import annotations

import hashlib
import logging
import re
import sys
import uuid
from contextvars import ContextVar

from pythonjsonlogger.json import JsonFormatter

from shared.tracing import current_trace_id

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


# Loggers that would print URLs, headers, frames or statement parameters below WARNING.
QUIET_LIBRARIES = (
    "uvicorn.access",
    "httpx",
    "httpcore",
    "aio_pika",
    "aiormq",
    "sqlalchemy.engine",
    "sqlalchemy.pool",
    "mail.log",  # aiosmtpd (the dev inbox): every SMTP command, AUTH included
)

_SECRETS = (
    # `Authorization: Bearer x`, `bearer=x`, ...
    (re.compile(r"(?i)\b(bearer)([\s=:]+)[A-Za-z0-9._~+/=-]{8,}"), r"\1\2[redacted]"),
    # A JWT anywhere (three base64url parts, the first two JSON objects).
    (re.compile(r"eyJ[A-Za-z0-9_-]*\.eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*"), "[redacted-jwt]"),
    # `X-API-Key: x`, `x-internal-api-key=x`, `'api_key': 'x'`
    (
        re.compile(
            r"(?i)(x-(?:internal-)?api-key|api_key|internal_api_key)(['\"]?[\s=:]+['\"]?)[^\s'\",}]+"
        ),
        r"\1\2[redacted]",
    ),
    # The password of `scheme://user:password@host`.
    (re.compile(r"(://[^/\s:@]+):[^/\s@]+@"), r"\1:[redacted]@"),
    # An FCM registration token (`<instance>:APA91b...`).
    (re.compile(r"[A-Za-z0-9_-]{8,}:APA91[A-Za-z0-9_-]+"), "[redacted-device-token]"),
)


def redact(text: str) -> str:
    """Mask the secrets a log line may carry by accident (see the module docstring)."""
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


class _RedactingJsonFormatter(JsonFormatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class _RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class _ContextFilter(logging.Filter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        record.correlation_id = correlation_id_var.get()
        trace_id = current_trace_id()
        if trace_id is not None:
            # JSON lines gain `trace_id` inside a span (an extra field, absent otherwise).
            record.trace_id = trace_id
        return True


def setup_logging(service: str, level: str = "INFO", fmt: str = "json") -> None:
    """Configure the root logger once per process. Safe to call again (it replaces handlers)."""
    handler = logging.StreamHandler(sys.stdout)
    if fmt == "json":
        handler.setFormatter(
            _RedactingJsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s %(service)s %(correlation_id)s",
                rename_fields={"asctime": "timestamp", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(
            _RedactingFormatter(
                "%(asctime)s %(levelname)s [%(service)s %(correlation_id)s] %(name)s: %(message)s"
            )
        )
    handler.addFilter(_ContextFilter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Access logs repeat what the metrics middleware counts, and carry paths; the others are
    # listed in `QUIET_LIBRARIES` for what they would print.
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.WARNING)
