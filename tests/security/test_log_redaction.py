"""The last net under the logs: what `redact()` masks if a line ever carries a secret, and
that the libraries that would print URLs, headers or parameters stay quiet at DEBUG."""

from __future__ import annotations

import logging

import pytest

from shared.logging import QUIET_LIBRARIES, redact, setup_logging

JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjMiLCJyb2xlIjoiYWRtaW4ifQ"
    ".c2lnbmF0dXJlLXNpZ25hdHVyZQ"
)


@pytest.mark.parametrize(
    ("line", "secret"),
    [
        ("Authorization: Bearer demo-api-key-0123456789abcdef", "demo-api-key-0123456789abcdef"),
        (f"token={JWT} expired", JWT),
        ("headers {'x-api-key': 'k-0123456789abcdef'}", "k-0123456789abcdef"),
        ("X-Internal-API-Key: dev-internal-key-change-me", "dev-internal-key-change-me"),
        ("connect amqp://guest:hunter2-secret@rabbit:5672/vhost failed", "hunter2-secret"),
        ("postgresql+asyncpg://app:pw-0123@db:5432/n", "pw-0123"),
        ("device dQw4w9WgXcQ:APA91bHun4MxP5egoKMwt2KZFBaFUH-1RYqx failed", "APA91bHun4MxP5eg"),
    ],
)
def test_redact_masks_secrets_a_line_carries_by_accident(line: str, secret: str) -> None:
    assert secret not in redact(line)


def test_redact_leaves_ordinary_lines_alone() -> None:
    line = "delivered notification 6d79d229-98f1-418d-adcc-d582568bdbef to device d4aa1589f499"
    assert redact(line) == line


def test_noisy_libraries_stay_at_warning_even_at_debug() -> None:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    levels = {name: logging.getLogger(name).level for name in QUIET_LIBRARIES}
    try:
        setup_logging("test", "DEBUG")
        assert root.level == logging.DEBUG
        for name in ("httpx", "httpcore", "aio_pika", "aiormq", "sqlalchemy.engine"):
            assert name in QUIET_LIBRARIES
            assert logging.getLogger(name).getEffectiveLevel() == logging.WARNING, name
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        for name, previous in levels.items():
            logging.getLogger(name).setLevel(previous)
