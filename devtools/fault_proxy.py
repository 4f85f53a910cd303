"""A small TCP proxy for fault drills: put it between a service and a dependency, then make
the path slow, cut it, or refuse it. This machine has no toxiproxy, tc or iptables.

Runs its own event loop in a background thread so a synchronous test can drive it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from enum import StrEnum


class Mode(StrEnum):
    PASS = "pass"
    DELAY = "delay"  # forward with a delay per chunk
    BLACKHOLE = "blackhole"  # accept, forward nothing
    REFUSE = "refuse"  # close every new connection at once


class FaultProxy:
    def __init__(self, listen_port: int, target_host: str, target_port: int) -> None:
        self.listen_port = listen_port
        self.target = (target_host, target_port)
        self.mode = Mode.PASS
        self.delay_seconds = 0.0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def start(self) -> FaultProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.listen_port)

    def set_mode(
        self, mode: Mode, *, delay_seconds: float = 0.0, drop_existing: bool = True
    ) -> None:
        self.mode = mode
        self.delay_seconds = delay_seconds
        if drop_existing and mode is not Mode.PASS and mode is not Mode.DELAY:
            self.drop_connections()

    @property
    def open_connections(self) -> int:
        """Sockets the proxy holds (two per proxied connection: client side and upstream)."""
        return len(self._writers)

    def drop_connections(self) -> None:
        """Reset every open connection (both directions)."""

        def close_all() -> None:
            for writer in list(self._writers):
                writer.transport.abort()
            self._writers.clear()

        self._loop.call_soon_threadsafe(close_all)

    def stop(self) -> None:
        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()
            current = asyncio.current_task()
            pending = [t for t in asyncio.all_tasks() if t is not current]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode is Mode.REFUSE:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        self._writers.discard(writer)
        self._writers.discard(up_writer)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                if self.mode is Mode.BLACKHOLE:
                    continue
                if self.mode is Mode.DELAY and self.delay_seconds:
                    await asyncio.sleep(self.delay_seconds)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.transport.abort()
