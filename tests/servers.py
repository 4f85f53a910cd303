"""Serve an app for real (uvicorn, a TCP port) in a thread of the test process.

The same `uvicorn_config` as `shared.http.serve`, so forwarded headers and timeouts behave as
in production; a thread rather than a subprocess keeps it cheap enough for a fixture.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI

from devtools.stack import free_port
from shared.http import uvicorn_config
from shared.settings import Settings


@contextmanager
def serve_in_thread(app: FastAPI, settings: Settings, port: int | None = None) -> Iterator[str]:
    """Serve `app` on 127.0.0.1 (a free port unless given); yields its base URL."""
    port = port or free_port()
    server_settings = settings.model_copy(update={"bind_host": "127.0.0.1"})
    server = uvicorn.Server(uvicorn_config(app, settings=server_settings, port=port))
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the app on port {port} did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)
