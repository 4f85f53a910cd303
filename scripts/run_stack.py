"""`make run`: start every service and stand-in, wait until healthy, print where to look.

Ctrl-C (or SIGTERM) stops everything this started. Logs go to `.run/logs/<service>.log`.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import threading
from pathlib import Path

from devtools.stack import ROOT, Stack, default_specs, settings_env
from scripts.seed import seed_all
from shared.settings import get_settings


def main() -> int:
    settings = get_settings()
    seeded = asyncio.run(seed_all(settings))
    demo_user = seeded.get("user_service", {}).get("demo_user_id", "<user-id>")
    log_dir = ROOT / ".run" / "logs"
    stack = Stack(default_specs(settings), settings_env(settings), log_dir)
    stopped = threading.Event()

    def stop(*_: object) -> None:
        stopped.set()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        stack.start()
        stack.wait_healthy(timeout=90)
    except (RuntimeError, TimeoutError) as exc:
        print(f"stack failed to start: {exc}", file=sys.stderr)
        stack.stop()
        return 1

    key = settings.demo_api_key.get_secret_value()
    body = json.dumps(
        {
            "notification_type": "email",
            "user_id": str(demo_user),
            "template_code": "welcome",
            "variables": {"name": "Ada", "link": "https://example.com/start"},
        }
    )
    print(
        f"""
All services are up (logs in {log_dir.relative_to(Path.cwd()) if log_dir.is_relative_to(Path.cwd()) else log_dir}).

  console            http://127.0.0.1:{settings.api_gateway_port}/console/  (admin {settings.demo_admin_email}, password DEMO_ADMIN_PASSWORD)
  API gateway        http://127.0.0.1:{settings.api_gateway_port}/docs  (ReDoc: /redoc)
  user service       http://127.0.0.1:{settings.user_service_port}/api/docs
  template service   http://127.0.0.1:{settings.template_service_port}/api/docs
  email service      http://127.0.0.1:{settings.email_service_port}/docs  (health: /health)
  push service       http://127.0.0.1:{settings.push_service_port}/docs  (health: /health)
  inbox (SMTP {settings.inbox_smtp_port})  http://127.0.0.1:{settings.inbox_http_port}/
  FCM stand-in       http://127.0.0.1:{settings.fcm_standin_port}/emulator/messages
  RabbitMQ           {settings.rabbitmq_url.split("@")[-1]}

Send the demo user a welcome email:

  curl -s -X POST http://127.0.0.1:{settings.api_gateway_port}/v1/notifications/send \\
    -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' \\
    -d '{body}'

Then: curl -s -H 'Authorization: Bearer {key}' http://127.0.0.1:{settings.api_gateway_port}/v1/notifications/<notification_id>/status
Dead letters: curl -s -H 'Authorization: Bearer {key}' http://127.0.0.1:{settings.api_gateway_port}/v1/admin/dead-letters/email
Ctrl-C stops everything.
""",
        flush=True,
    )
    while not stopped.wait(1.0):
        for name, process in list(stack.processes.items()):
            if process.poll() is not None:
                print(
                    f"{name} exited with {process.returncode}; see {log_dir / name}.log",
                    file=sys.stderr,
                )
                stack.processes.pop(name)
    print("stopping...", flush=True)
    stack.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
