"""RabbitMQ: the topology, the message schema, the confirmed publisher and the consumer runtime."""
