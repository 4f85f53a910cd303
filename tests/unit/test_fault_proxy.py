"""The drill proxy forwards, refuses and cuts connections as told."""

from __future__ import annotations

import socket
import threading

import pytest

from devtools.fault_proxy import FaultProxy, Mode
from devtools.stack import free_port


@pytest.fixture
def echo_port():  # type: ignore[no-untyped-def]
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                while data := conn.recv(1024):
                    conn.sendall(data)

    threading.Thread(target=serve, daemon=True).start()
    yield port
    server.close()


def _roundtrip(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(b"ping")
        return sock.recv(1024)


def _answer(port: int) -> bytes | None:
    try:
        return _roundtrip(port)
    except OSError:
        return None


def test_proxy_forwards_then_refuses_then_recovers(echo_port: int) -> None:
    proxy = FaultProxy(free_port(), "127.0.0.1", echo_port).start()
    try:
        assert _roundtrip(proxy.listen_port) == b"ping"
        proxy.set_mode(Mode.REFUSE)
        assert _answer(proxy.listen_port) in (None, b"")
        proxy.set_mode(Mode.PASS)
        assert _roundtrip(proxy.listen_port) == b"ping"
    finally:
        proxy.stop()
