"""The RabbitMQ topology, declared idempotently by every service from this one function.

```
notifications.direct (direct) --email--> email.queue --(reject)--> notifications.dlx --> failed.queue
                              --push---> push.queue  --(reject)--> notifications.dlx --> failed.queue
email.retry.<ms> (TTL <ms>) --expired--> notifications.direct/email   (one delay queue per level)
```

Retries wait in delay queues with a queue-level TTL that dead-letter back to the work
exchange. A per-message TTL would only expire at the head of a queue, and the delayed-message
plugin is not available on the RabbitMQ we target, hence one queue per backoff level.
"""

from __future__ import annotations

from dataclasses import dataclass

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue

from shared.messaging.message import Channel

WORK_EXCHANGE = "notifications.direct"
DEAD_LETTER_EXCHANGE = "notifications.dlx"
FAILED_QUEUE = "failed.queue"
MAX_PRIORITY = 9

WORK_QUEUES: dict[Channel, str] = {Channel.EMAIL: "email.queue", Channel.PUSH: "push.queue"}


def work_queue_name(channel: Channel) -> str:
    return WORK_QUEUES[channel]


def delay_queue_name(channel: Channel, delay_ms: int) -> str:
    return f"{channel.value}.retry.{delay_ms}ms"


@dataclass(frozen=True)
class Topology:
    work_exchange: AbstractExchange
    dead_letter_exchange: AbstractExchange
    work_queues: dict[Channel, AbstractQueue]
    failed_queue: AbstractQueue
    delay_levels_ms: tuple[int, ...]


async def declare_topology(channel: AbstractChannel, delay_levels_ms: list[int]) -> Topology:
    """Declare every exchange and queue. Declaring again with the same arguments is a no-op."""
    work_exchange = await channel.declare_exchange(
        WORK_EXCHANGE, aio_pika.ExchangeType.DIRECT, durable=True
    )
    dlx = await channel.declare_exchange(
        DEAD_LETTER_EXCHANGE, aio_pika.ExchangeType.FANOUT, durable=True
    )
    failed = await channel.declare_queue(FAILED_QUEUE, durable=True)
    await failed.bind(dlx)

    work_queues: dict[Channel, AbstractQueue] = {}
    for notification_channel, queue_name in WORK_QUEUES.items():
        queue = await channel.declare_queue(
            queue_name,
            durable=True,
            arguments={
                "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
                "x-max-priority": MAX_PRIORITY,
            },
        )
        await queue.bind(work_exchange, routing_key=notification_channel.value)
        work_queues[notification_channel] = queue
        for delay_ms in delay_levels_ms:
            await channel.declare_queue(
                delay_queue_name(notification_channel, delay_ms),
                durable=True,
                arguments={
                    "x-message-ttl": delay_ms,
                    "x-dead-letter-exchange": WORK_EXCHANGE,
                    "x-dead-letter-routing-key": notification_channel.value,
                },
            )
    return Topology(
        work_exchange=work_exchange,
        dead_letter_exchange=dlx,
        work_queues=work_queues,
        failed_queue=failed,
        delay_levels_ms=tuple(sorted(delay_levels_ms)),
    )
