"""The RabbitMQ topology against a real broker, in this run's own vhost."""

from __future__ import annotations

import uuid

import aio_pika
import pytest

from shared.messaging.message import Channel
from shared.messaging.publisher import Publisher
from shared.messaging.topology import FAILED_QUEUE, declare_topology, delay_queue_name
from shared.settings import Settings
from tests.conftest import wait_for


async def test_declaring_the_topology_twice_is_harmless(base_settings: Settings) -> None:
    connection = await aio_pika.connect(base_settings.rabbitmq_url)
    try:
        channel = await connection.channel()
        first = await declare_topology(channel, base_settings.retry_delay_levels_ms)
        second = await declare_topology(channel, base_settings.retry_delay_levels_ms)
        assert first.work_queues.keys() == second.work_queues.keys()
        # Passive declares succeed only if the queues really exist with these names.
        for name in (
            "email.queue",
            "push.queue",
            FAILED_QUEUE,
            delay_queue_name(Channel.EMAIL, 100),
        ):
            await channel.declare_queue(name, passive=True)
    finally:
        await connection.close()


async def test_a_message_rejected_by_a_consumer_lands_in_the_failed_queue(
    base_settings: Settings,
) -> None:
    publisher = Publisher(base_settings, connection_name="test-publisher")
    await publisher.connect()
    connection = await aio_pika.connect(base_settings.rabbitmq_url)
    try:
        channel = await connection.channel()
        topology = await declare_topology(channel, base_settings.retry_delay_levels_ms)
        await topology.failed_queue.purge()
        marker = uuid.uuid4().hex
        assert publisher.topology is not None
        await publisher.publish(
            publisher.topology.work_exchange, routing_key="push", body=b"{}", message_id=marker
        )
        incoming = await wait_for(lambda: topology.work_queues[Channel.PUSH].get(fail=False))
        assert incoming.message_id == marker
        await incoming.reject(requeue=False)

        dead = await wait_for(lambda: topology.failed_queue.get(fail=False))
        assert dead.message_id == marker
        assert dead.headers["x-death"][0]["reason"] == "rejected"
        await dead.ack()
    finally:
        await connection.close()
        await publisher.close()


@pytest.mark.parametrize("routing_key", ["nowhere"])
async def test_an_unroutable_publish_is_an_error_not_a_silent_loss(
    base_settings: Settings, routing_key: str
) -> None:
    from shared.messaging.publisher import PublishError

    publisher = Publisher(base_settings, connection_name="test-publisher")
    await publisher.connect()
    try:
        assert publisher.topology is not None
        with pytest.raises(PublishError):
            await publisher.publish(
                publisher.topology.work_exchange, routing_key=routing_key, body=b"{}"
            )
    finally:
        await publisher.close()
