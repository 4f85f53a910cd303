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


async def sample_forever(
    connection: AbstractRobustConnection,
    queues: list[str],
    interval_seconds: float = SAMPLE_INTERVAL_SECONDS,
) -> None:
    """Sample every `interval_seconds` until cancelled; a failed round is logged and retried."""
    while True:
        try:
            await sample_once(connection, queues)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the broker is away: the gauges keep their last values
            logger.debug("queue depth sample failed: %s", type(exc).__name__)
        await asyncio.sleep(interval_seconds)
