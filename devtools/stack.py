"""Start, watch and stop the whole stack as subprocesses.

`make run` uses it with the fixed ports of the developers' guide; the end-to-end tests and
drills use it with free ports, their own database, vhost and Redis prefix, so they run while
`make run` is up on the same machine.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class ProcessSpec:
    name: str
    module: str
    health_url: str
    args: list[str] = field(default_factory=list)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment variables that reproduce `settings` in a child process."""
    env: dict[str, str] = {}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        if isinstance(value, list):
            import json

            value = json.dumps(value)
        env[name.upper()] = str(value)
    return env


def default_specs(settings: Settings) -> list[ProcessSpec]:
    host = "http://127.0.0.1"
    return [
        ProcessSpec(
            "smtp-inbox",
            "devtools.smtp_inbox",
            f"{host}:{settings.inbox_http_port}/api/v1/messages",
        ),
        ProcessSpec(
            "fcm-standin",
            "devtools.fcm_standin",
            f"{host}:{settings.fcm_standin_port}/health",
        ),
        ProcessSpec(
            "user_service",
            "services.user_service",
            f"{host}:{settings.user_service_port}/api/v1/health",
        ),
        ProcessSpec(
            "template_service",
            "services.template_service",
            f"{host}:{settings.template_service_port}/api/v1/health",
        ),
        ProcessSpec(
            "api_gateway", "services.api_gateway", f"{host}:{settings.api_gateway_port}/health"
        ),
        ProcessSpec(
            "email_service",
            "services.email_service",
            f"{host}:{settings.email_service_port}/health",
        ),
        ProcessSpec(
            "push_service", "services.push_service", f"{host}:{settings.push_service_port}/health"
        ),
    ]


class Stack:
    def __init__(
        self,
        specs: list[ProcessSpec],
        env: Mapping[str, str],
        log_dir: Path,
    ) -> None:
        self.specs = {spec.name: spec for spec in specs}
        self.env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        self.log_dir = log_dir
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, *names: str) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for name in names or tuple(self.specs):
            spec = self.specs[name]
            log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - lives as long as the child
            self.processes[name] = subprocess.Popen(
                [sys.executable, "-m", spec.module, *spec.args],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_healthy(self, *names: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        pending = list(names or tuple(self.specs))
        with httpx.Client(timeout=2.0) as client:
            while pending:
                name = pending[0]
                process = self.processes.get(name)
                if process is not None and process.poll() is not None:
                    raise RuntimeError(
                        f"{name} exited with {process.returncode}; see {self.log_dir / name}.log"
                    )
                try:
                    if client.get(self.specs[name].health_url).status_code == 200:
                        pending.pop(0)
                        continue
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"{name} not healthy within {timeout}s; see {self.log_dir / name}.log"
                    )
                time.sleep(0.1)

    def signal(self, name: str, sig: signal.Signals) -> None:
        self.processes[name].send_signal(sig)

    def kill(self, name: str) -> None:
        process = self.processes.pop(name)
        process.kill()
        process.wait(10)

    def stop(self, *names: str, timeout: float = 15.0) -> None:
        targets = names or tuple(reversed(list(self.processes)))
        for name in targets:
            process = self.processes.get(name)
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for name in targets:
            process = self.processes.pop(name, None)
            if process is None:
                continue
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
