"""Queue depths as metrics, sampled by the workers: the dashboards and the console's overview
read them from `/metrics` like everything else, with no RabbitMQ plugin to enable.

Each worker samples every work queue (so a channel whose workers are all down still shows
zero consumers, reported by the other), its own channel's delay queues, and `failed.queue`;
queues reported by several workers are the same queue: take the max across instances. A
passive declare is one round trip per queue and reads RabbitMQ's count of ready messages and
consumers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable

from aio_pika.abc import AbstractRobustConnection

from shared.messaging.message import Channel
from shared.messaging.topology import FAILED_QUEUE, WORK_QUEUES, delay_queue_name
from shared.metrics import QUEUE_CONSUMERS, QUEUE_MESSAGES

logger = logging.getLogger("shared.messaging.queue_depth")

SAMPLE_INTERVAL_SECONDS = 5.0


def sampled_queues(channel: Channel, delay_levels_ms: Iterable[int]) -> list[str]:
    return [
        *WORK_QUEUES.values(),
        *(delay_queue_name(channel, ms) for ms in delay_levels_ms),
        FAILED_QUEUE,
    ]


async def sample_once(connection: AbstractRobustConnection, queues: Iterable[str]) -> None:
    channel = await connection.channel()
    try:
        for name in queues:
            declared = await channel.declare_queue(name, passive=True)
            result = declared.declaration_result
            QUEUE_MESSAGES.labels(name).set(result.message_count or 0)
            QUEUE_CONSUMERS.labels(name).set(result.consumer_count or 0)
    finally:
        await channel.close()


class QueueDepthSampler:
    """Samples every `interval_seconds` until `stop()`.

    Stopping waits for a sample in progress to end rather than cancelling it: a passive declare
    cancelled mid-flight can leave its channel unable to close, which would hang the worker's
    shutdown. Cancellation is only the last resort, after `STOP_TIMEOUT_SECONDS`.
    """

    STOP_TIMEOUT_SECONDS = 10.0

    def __init__(
        self,
        connection: AbstractRobustConnection,
        queues: list[str],
        interval_seconds: float = SAMPLE_INTERVAL_SECONDS,
    ) -> None:
        self.connection = connection
        self.queues = queues
        self.interval_seconds = interval_seconds
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="queue-depth-sampler")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is None:
            return
        try:
            await asyncio.wait_for(self._task, self.STOP_TIMEOUT_SECONDS)
        except TimeoutError:
            logger.warning("queue depth sampler did not stop in time; cancelled")

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                await sample_once(self.connection, self.queues)
            except Exception as exc:  # the broker is away: the gauges keep their last values
                logger.debug("queue depth sample failed: %s", type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.interval_seconds)
