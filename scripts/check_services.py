"""Check that PostgreSQL, Redis and RabbitMQ answer; print one clear line per missing one.

Used by `make run` and `make test` before anything else, so a missing service is a sentence,
not a stack trace. `--start` tries to start the missing ones first (what `.ci/run` does).
"""

from __future__ import annotations

import glob
import os
import socket
import subprocess
import sys
import time
from urllib.parse import urlparse

SERVICES = [
    (
        "PostgreSQL",
        os.environ.get("DATABASE_URL", "postgresql://127.0.0.1:5432"),
        5432,
        "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
    ),
    (
        "Redis",
        os.environ.get("REDIS_URL", "redis://127.0.0.1:6379"),
        6379,
        'redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no',
    ),
    (
        "RabbitMQ",
        os.environ.get("RABBITMQ_URL", "amqp://127.0.0.1:5672"),
        5672,
        "rabbitmq-server -detached",
    ),
]


def reachable(url: str, default_port: int) -> bool:
    parsed = urlparse(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or default_port
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def start_command(name: str, command: str) -> str:
    if name == "PostgreSQL":
        versions = sorted(glob.glob("/etc/postgresql/*"))
        if versions:
            command = command.replace("$(ls /etc/postgresql)", os.path.basename(versions[-1]))
    return command


def main() -> int:
    start = "--start" in sys.argv
    missing = []
    for name, url, port, command in SERVICES:
        if reachable(url, port):
            continue
        if start:
            print(f"{name} is down; starting it: {start_command(name, command)}")
            subprocess.run(start_command(name, command), shell=True, check=False)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not reachable(url, port):
                time.sleep(0.5)
            if reachable(url, port):
                continue
        missing.append((name, url, command))
    for name, url, command in missing:
        print(f"{name} is not reachable at {url}: start it with `{command}`", file=sys.stderr)
    return 1 if missing else 0


if __name__ == "__main__":
    raise SystemExit(main())
