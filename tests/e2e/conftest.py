"""The whole stack as subprocesses on free ports, against this run's database, vhost and
Redis prefix: the same launcher `make run` uses."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from scripts.seed import seed_all
from shared.devtools.stack import Stack, default_specs, free_port, settings_env
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def stack_settings(base: Settings, rabbitmq_url: str) -> Settings:
    ports = {
        name: free_port()
        for name in (
            "api_gateway_port",
            "user_service_port",
            "template_service_port",
            "email_service_port",
            "push_service_port",
            "inbox_smtp_port",
            "inbox_http_port",
            "fcm_standin_port",
        )
    }
    return base.model_copy(
        update={
            **ports,
            "smtp_port": ports["inbox_smtp_port"],
            "fcm_base_url": f"http://127.0.0.1:{ports['fcm_standin_port']}",
            "user_service_url": f"http://127.0.0.1:{ports['user_service_port']}",
            "template_service_url": f"http://127.0.0.1:{ports['template_service_port']}",
            "api_gateway_url": f"http://127.0.0.1:{ports['api_gateway_port']}",
            "email_service_url": f"http://127.0.0.1:{ports['email_service_port']}",
            "push_service_url": f"http://127.0.0.1:{ports['push_service_port']}",
            "log_format": "json",
            "rabbitmq_url": rabbitmq_url,
        }
    )


@pytest.fixture(scope="module")
def stack_settings_fixture(base_settings: Settings, make_vhost: Callable[[str], str]) -> Settings:
    return stack_settings(base_settings, make_vhost("e2e"))


@pytest.fixture(scope="module")
def seeded(stack_settings_fixture: Settings) -> dict[str, object]:
    return asyncio.run(seed_all(stack_settings_fixture))


@pytest.fixture(scope="module")
def stack(
    stack_settings_fixture: Settings,
    seeded: dict[str, object],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    log_dir = tmp_path_factory.mktemp("stack-logs")
    running = Stack(
        default_specs(stack_settings_fixture), settings_env(stack_settings_fixture), log_dir
    )
    running.start()
    try:
        running.wait_healthy(timeout=60)
        yield running
    finally:
        running.stop()
