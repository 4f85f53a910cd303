"""Property-based contract tests: schemathesis drives all five apps in-process (ASGI, real
PostgreSQL/Redis/RabbitMQ through `base_settings`) from the OpenAPI each app serves, and every
response must be a non-5xx that its operation documents (status code, content type and body
schema). An undocumented status code fails the test like a 500 does: no input may produce an
answer the contract does not describe.

Examples per operation are bounded (`MAX_EXAMPLES`) so the whole module stays around a minute.
"""

from __future__ import annotations

import asyncio
import importlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
import uvicorn
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from devtools.stack import free_port
from shared.settings import Settings
from tests.identity import mint_token

MAX_EXAMPLES = 6
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
HYPOTHESIS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    # No shrinking: a failing case is reported as found, which keeps a red run as fast as a green.
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


def _app_or_skip(service: str, base_settings: Settings) -> FastAPI:
    try:
        module = importlib.import_module(f"services.{service}.app")
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith(f"services.{service}"):
            pytest.skip(f"services.{service}.app does not exist yet")
        raise
    app: FastAPI = module.create_app(base_settings)
    return app


def _seed(service: str, base_settings: Settings) -> dict[str, Any]:
    """The service's demo data (idempotent), so authenticated operations reach real rows."""
    try:
        module = importlib.import_module(f"services.{service}.seed")
    except ModuleNotFoundError:
        return {}
    seeded: dict[str, Any] = asyncio.run(module.seed_demo(base_settings)) or {}
    return seeded


def _admin_headers(base_settings: Settings, seeded: dict[str, Any]) -> dict[str, str]:
    admin = uuid.UUID(seeded["admin_id"])
    token = mint_token(base_settings, admin, "admin")
    return {
        "Authorization": f"Bearer {token}",
        "X-Internal-API-Key": base_settings.internal_api_key.get_secret_value(),
    }


def _schema(app: FastAPI) -> Any:
    assert app.openapi_url, "the app serves no OpenAPI document"
    return schemathesis.openapi.from_asgi(app.openapi_url, app)


def _summary(exc: BaseException) -> str:
    """The failure titles and the status/body that caused them, without the curl noise."""
    if isinstance(exc, FailureGroup):
        return "; ".join(f"{f.title}: {f.message}".replace("\n", " ")[:300] for f in exc.exceptions)
    return f"{type(exc).__name__}: {exc}"[:300]


def _run(schema: Any, headers: dict[str, str]) -> None:
    """Every operation, `MAX_EXAMPLES` generated cases each; report all failing operations.

    A 5xx, an undocumented status code, a wrong content type or a body that breaks its schema
    fails the test.

    (A loop over operations rather than `schemathesis.pytest.from_fixture`, whose lazy
    parametrisation relies on a pytest internal that pytest 9 removed.)
    """
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @HYPOTHESIS
        def check(case: Any) -> None:
            case.call_and_validate(headers=headers, checks=CHECKS)

        try:
            check()
        except (Exception, FailureGroup) as exc:  # every operation's failures, not the first
            failures.append(f"{operation.method.upper()} {operation.path}: {_summary(exc)}")
    assert operations, "the schema has no operations"
    assert not failures, "\n".join(failures)


@pytest.fixture(scope="module", autouse=True)
def _stop_lifespans() -> Iterator[None]:
    """Schemathesis starts each app's lifespan once; close them before the database goes."""
    yield
    asgi.shutdown_lifespans()


# --- user service -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def user_app(base_settings: Settings) -> FastAPI:
    return _app_or_skip("user_service", base_settings)


@pytest.fixture(scope="module")
def user_schema(user_app: FastAPI) -> Any:
    return _schema(user_app)


@pytest.fixture(scope="module")
def user_headers(user_app: FastAPI, base_settings: Settings) -> dict[str, str]:
    return _admin_headers(base_settings, _seed("user_service", base_settings))


def test_user_service_honours_its_contract(user_schema: Any, user_headers: dict[str, str]) -> None:
    _run(user_schema, user_headers)


# --- template service -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def template_app(base_settings: Settings) -> FastAPI:
    return _app_or_skip("template_service", base_settings)


@pytest.fixture(scope="module")
def template_schema(template_app: FastAPI) -> Any:
    return _schema(template_app)


@pytest.fixture(scope="module")
def template_headers(template_app: FastAPI, base_settings: Settings) -> dict[str, str]:
    seeded = {**_seed("user_service", base_settings), **_seed("template_service", base_settings)}
    return _admin_headers(base_settings, seeded)


def test_template_service_honours_its_contract(
    template_schema: Any, template_headers: dict[str, str]
) -> None:
    _run(template_schema, template_headers)


# --- api gateway ------------------------------------------------------------------------------


@dataclass
class _Server:
    """A real uvicorn server in a thread of this process, on a free port."""

    server: uvicorn.Server
    thread: threading.Thread
    url: str


def _serve(app: FastAPI) -> _Server:
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "upstream did not start"
        time.sleep(0.02)
    return _Server(server, thread, f"http://127.0.0.1:{port}")


@pytest.fixture(scope="module")
def gateway_upstreams(
    base_settings: Settings, make_vhost: Callable[[str], str]
) -> Iterator[dict[str, str]]:
    """The services the gateway calls, served for real, with demo data: the user and template
    services, and both workers (for the operator API), on a vhost of their own so they never
    take a message another test published."""
    workers = base_settings.model_copy(update={"rabbitmq_url": make_vhost("contract")})
    servers = {
        "user_service_url": _serve(_app_or_skip("user_service", base_settings)),
        "template_service_url": _serve(_app_or_skip("template_service", base_settings)),
        "email_service_url": _serve(_app_or_skip("email_service", workers)),
        "push_service_url": _serve(_app_or_skip("push_service", workers)),
    }
    _seed("user_service", base_settings)
    _seed("template_service", base_settings)
    try:
        yield {name: server.url for name, server in servers.items()}
    finally:
        for server in servers.values():
            server.server.should_exit = True
        for server in servers.values():
            server.thread.join(15)


@pytest.fixture(scope="module")
def gateway_app(base_settings: Settings, gateway_upstreams: dict[str, str]) -> FastAPI:
    return _app_or_skip("api_gateway", base_settings.model_copy(update=gateway_upstreams))


@pytest.fixture(scope="module")
def gateway_schema(gateway_app: FastAPI) -> Any:
    return _schema(gateway_app)


@pytest.fixture(scope="module")
def gateway_headers(gateway_app: FastAPI, base_settings: Settings) -> dict[str, str]:
    _seed("api_gateway", base_settings)  # the demo API key
    return {
        "Authorization": f"Bearer {base_settings.demo_api_key.get_secret_value()}",
        "X-Internal-API-Key": base_settings.internal_api_key.get_secret_value(),
    }


def test_gateway_honours_its_contract(gateway_schema: Any, gateway_headers: dict[str, str]) -> None:
    _run(gateway_schema, gateway_headers)


# --- delivery workers -------------------------------------------------------------------------


def _worker_settings(
    base_settings: Settings, make_vhost: Callable[[str], str], purpose: str
) -> Settings:
    """A vhost of its own (the worker consumes and its DLQ admin may purge), and an SMTP port
    where nothing listens: `/test-email` then answers its documented 503."""
    return base_settings.model_copy(
        update={"rabbitmq_url": make_vhost(purpose), "smtp_port": free_port()}
    )


def _internal_headers(base_settings: Settings) -> dict[str, str]:
    return {"X-Internal-API-Key": base_settings.internal_api_key.get_secret_value()}


@pytest.fixture(scope="module")
def email_schema(base_settings: Settings, make_vhost: Callable[[str], str]) -> Any:
    return _schema(
        _app_or_skip("email_service", _worker_settings(base_settings, make_vhost, "st-email"))
    )


def test_email_service_honours_its_contract(email_schema: Any, base_settings: Settings) -> None:
    _run(email_schema, _internal_headers(base_settings))


@pytest.fixture(scope="module")
def push_schema(base_settings: Settings, make_vhost: Callable[[str], str]) -> Any:
    return _schema(
        _app_or_skip("push_service", _worker_settings(base_settings, make_vhost, "st-push"))
    )


def test_push_service_honours_its_contract(push_schema: Any, base_settings: Settings) -> None:
    _run(push_schema, _internal_headers(base_settings))
