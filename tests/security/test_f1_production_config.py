"""F1: a service started with `ENVIRONMENT=production` ran with the shipped secrets and the demo
admin, and a token forged with the shipped JWT secret listed every user.

Now every entry point refuses to start on shipped or short secrets and on any `DEMO_*` value,
naming the variable, exiting non-zero without a traceback; the seed never runs in production;
and no token can be forged from a shipped secret, because the only signing key is the user
service's private key.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError

from devtools.stack import free_port
from services.user_service.settings import UserServiceSettings
from shared.settings import DEMO_DEFAULTS, Settings, describe_settings_error
from shared.token_keys import private_key_pem
from tests.conftest import wait_for

ROOT = Path(__file__).resolve().parents[2]
SETTING_NAMES = {name.upper() for name in UserServiceSettings.model_fields}
GOOD_KEY = "k" * 48
GOOD_UNSUBSCRIBE_SECRET = "u" * 48
SAFE_RABBITMQ = "amqp://notifications:a-long-broker-password@127.0.0.1:5672/"

ENTRY_POINTS = [
    "services.user_service",
    "services.template_service",
    "services.api_gateway",
    "services.email_service",
    "services.push_service",
    "shared.migrate",
    "scripts.seed",
    "services.user_service.seed",
]


def _refusal(**values: object) -> str:
    with pytest.raises(ValidationError) as refused:
        UserServiceSettings(_env_file=None, environment="production", **values)
    return describe_settings_error(refused.value)


def test_shipped_and_short_secrets_are_refused_by_name() -> None:
    message = _refusal()
    assert "INTERNAL_API_KEY is the shipped default" in message
    assert "RABBITMQ_URL uses the shipped guest credentials" in message
    assert "JWT_PRIVATE_KEY or JWT_PRIVATE_KEY_FILE" in message
    assert "UNSUBSCRIBE_SECRET is the shipped default" in message
    short = _refusal(
        internal_api_key="x" * 31, unsubscribe_secret="y" * 31, rabbitmq_url=SAFE_RABBITMQ
    )
    assert "INTERNAL_API_KEY is shorter than 32 bytes" in short
    assert "UNSUBSCRIBE_SECRET is shorter than 32 bytes" in short


@pytest.mark.parametrize("field", sorted(DEMO_DEFAULTS))
def test_any_demo_value_is_refused_in_production(field: str) -> None:
    message = _refusal(
        internal_api_key=GOOD_KEY,
        rabbitmq_url=SAFE_RABBITMQ,
        jwt_private_key_file="/keys/k.pem",
        **{field: "anything"},
    )
    assert message.count("must be unset in production") == 1
    assert f"{field.upper()} must be unset" in message


def test_a_safe_production_configuration_has_no_demo_values() -> None:
    settings = UserServiceSettings(
        _env_file=None,
        environment="production",
        internal_api_key=GOOD_KEY,
        unsubscribe_secret=GOOD_UNSUBSCRIBE_SECRET,
        rabbitmq_url=SAFE_RABBITMQ,
        jwt_private_key_file="/keys/k.pem",
    )
    assert all(getattr(settings, field) is None for field in DEMO_DEFAULTS)
    # Outside production the demo values are there for `make run`.
    assert Settings(_env_file=None).demo_admin_email == DEMO_DEFAULTS["demo_admin_email"]


def test_the_refusal_never_echoes_a_secret() -> None:
    secret = "short-but-secret"
    assert secret not in _refusal(
        internal_api_key=secret, unsubscribe_secret=secret, demo_admin_password=secret
    )


def _production_env(tmp: Path, **values: str) -> dict[str, str]:
    """The environment of a production process started from an empty directory (no `.env`),
    with none of this machine's settings leaking in, and free ports in case it did start."""
    env = {k: v for k, v in os.environ.items() if k not in SETTING_NAMES}
    env.update(
        PYTHONPATH=str(ROOT),
        ENVIRONMENT="production",
        DATABASE_URL="postgresql+asyncpg://postgres@127.0.0.1:5432/notif_never_created",
        **{port: str(free_port()) for port in SETTING_NAMES if port.endswith("_PORT")},
    )
    env.update(values)
    return env


def _run_all(modules: list[str], env: dict[str, str], cwd: Path) -> dict[str, tuple[int, str]]:
    """Start every module at once and collect (exit status, output) of each."""
    processes = {
        module: subprocess.Popen(
            [sys.executable, "-m", module],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for module in modules
    }
    results = {}
    for module, process in processes.items():
        try:
            # Generous: on a loaded machine importing a service takes seconds.
            output, _ = process.communicate(timeout=180)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
            raise AssertionError(f"{module} did not refuse to start:\n{output[-2000:]}") from None
        results[module] = (process.returncode, output)
    return results


def test_every_entry_point_refuses_the_shipped_defaults(tmp_path: Path) -> None:
    results = _run_all(ENTRY_POINTS, _production_env(tmp_path), tmp_path)
    for module, (status, output) in results.items():
        assert status != 0, f"{module} started with the shipped secrets"
        assert "INTERNAL_API_KEY is the shipped default" in output, (module, output)
        assert "Traceback" not in output, (module, output)
        assert "dev-internal-key-change-me" not in output


def test_demo_values_stop_the_services_and_the_seed(tmp_path: Path) -> None:
    env = _production_env(
        tmp_path,
        INTERNAL_API_KEY=GOOD_KEY,
        RABBITMQ_URL=SAFE_RABBITMQ,
        DEMO_ADMIN_PASSWORD="admin-password-123",
    )
    results = _run_all(["services.api_gateway", "scripts.seed", "shared.migrate"], env, tmp_path)
    for module, (status, output) in results.items():
        assert status != 0 and "DEMO_ADMIN_PASSWORD must be unset" in output, (module, output)
        assert "admin-password-123" not in output and "Traceback" not in output


def test_the_seed_never_runs_in_production(tmp_path: Path) -> None:
    env = _production_env(
        tmp_path,
        INTERNAL_API_KEY=GOOD_KEY,
        UNSUBSCRIBE_SECRET=GOOD_UNSUBSCRIBE_SECRET,
        RABBITMQ_URL=SAFE_RABBITMQ,
    )
    results = _run_all(["scripts.seed", "services.user_service.seed"], env, tmp_path)
    for module, (status, output) in results.items():
        assert status != 0, module
        assert "the demo seed never runs in production" in output, (module, output)
        assert "Traceback" not in output


def test_the_user_service_refuses_a_missing_or_bad_signing_key(tmp_path: Path) -> None:
    bad = tmp_path / "not-a-key.pem"
    bad.write_text("CHANGE_ME")
    base = {
        "INTERNAL_API_KEY": GOOD_KEY,
        "UNSUBSCRIBE_SECRET": GOOD_UNSUBSCRIBE_SECRET,
        "RABBITMQ_URL": SAFE_RABBITMQ,
    }
    missing = _run_all(["services.user_service"], _production_env(tmp_path, **base), tmp_path)
    status, output = missing["services.user_service"]
    assert status != 0 and "JWT_PRIVATE_KEY or JWT_PRIVATE_KEY_FILE must hold" in output
    env = _production_env(tmp_path, JWT_PRIVATE_KEY_FILE=str(bad), **base)
    status, output = _run_all(["services.user_service"], env, tmp_path)["services.user_service"]
    assert status != 0, output
    assert "JWT_PRIVATE_KEY_FILE is not an unencrypted PEM private key" in output
    assert "Traceback" not in output and "CHANGE_ME" not in output


async def test_a_safe_production_user_service_starts(
    tmp_path: Path, base_settings: Settings
) -> None:
    key = tmp_path / "signing-key.pem"
    key.write_bytes(private_key_pem(Ed25519PrivateKey.generate()))
    port = free_port()
    env = _production_env(
        tmp_path,
        INTERNAL_API_KEY=GOOD_KEY,
        UNSUBSCRIBE_SECRET=GOOD_UNSUBSCRIBE_SECRET,
        RABBITMQ_URL=SAFE_RABBITMQ,
        JWT_PRIVATE_KEY_FILE=str(key),
        DATABASE_URL=base_settings.database_url,
        REDIS_URL=base_settings.redis_url,
        REDIS_KEY_PREFIX=base_settings.redis_key_prefix,
        USER_SERVICE_PORT=str(port),
        LOG_FORMAT="text",
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.user_service",
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=2) as client:

            async def healthy() -> bool:
                assert process.returncode is None, "the production user service exited"
                try:
                    return (await client.get("/api/v1/health")).status_code == 200
                except httpx.HTTPError:
                    return False

            await wait_for(healthy, timeout=120)
            jwks = (await client.get("/.well-known/jwks.json")).json()
        assert [k["alg"] for k in jwks["keys"]] == ["EdDSA"]
    finally:
        if process.returncode is None:
            process.terminate()
        output, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    assert b"Traceback" not in output


async def test_a_token_forged_with_the_shipped_secret_is_refused(
    users: httpx.AsyncClient,
) -> None:
    """The finding's exploit: an HS256 token signed with the old shipped `JWT_SECRET`."""
    now = int(time.time())
    forged = jwt.encode(
        {
            "sub": "00000000-0000-4000-8000-000000000000",
            "role": "admin",
            "ver": 0,
            "iat": now,
            "exp": now + 600,
        },
        "dev-jwt-secret-change-me-please-32b",
        algorithm="HS256",
    )
    response = await users.get("/api/v1/users", headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401 and response.json()["error"] == "invalid_token"
