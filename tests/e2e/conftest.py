"""The whole stack as subprocesses on free ports, against this run's database, vhost and
Redis prefix: the same launcher `make run` uses.

The fixtures are package-scoped: each test package that uses them (this one, and
`tests/client/`, which imports them) starts one stack for all its modules.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from devtools.stack import Stack, default_specs, free_port, settings_env
from scripts.seed import seed_all
from shared.settings import Settings
from tests.conftest import RELAXED_USER_SERVICE

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
            # The unsubscribe links in the emails point at this stack's gateway.
            "public_base_url": f"http://127.0.0.1:{ports['api_gateway_port']}",
            "email_service_url": f"http://127.0.0.1:{ports['email_service_port']}",
            "push_service_url": f"http://127.0.0.1:{ports['push_service_port']}",
            "log_format": "json",
            "rabbitmq_url": rabbitmq_url,
        }
    )


@pytest.fixture(scope="package")
def stack_settings_fixture(base_settings: Settings, make_vhost: Callable[[str], str]) -> Settings:
    return stack_settings(base_settings, make_vhost("e2e"))


def stack_env(settings: Settings) -> dict[str, str]:
    """The environment of a test stack: `settings`, plus the user service's relaxed limits
    (tests register and log in far more often from one address than any person would)."""
    return {
        **settings_env(settings),
        **{k.upper(): str(v) for k, v in RELAXED_USER_SERVICE.items()},
    }


@pytest.fixture(scope="package")
def seeded(stack_settings_fixture: Settings) -> dict[str, object]:
    return asyncio.run(seed_all(stack_settings_fixture))


@pytest.fixture(scope="package")
def stack(
    stack_settings_fixture: Settings,
    seeded: dict[str, object],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    log_dir = tmp_path_factory.mktemp("stack-logs")
    running = Stack(
        default_specs(stack_settings_fixture), stack_env(stack_settings_fixture), log_dir
    )
    running.start()
    try:
        running.wait_healthy(timeout=60)
        yield running
    finally:
        running.stop()
