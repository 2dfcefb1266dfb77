"""Unkeyed operations are spread over a topic's partitions message by message: a relay
batch does not land on one partition (and so on the one worker that holds it)."""

from __future__ import annotations

import asyncio

from confluent_kafka import Consumer, TopicPartition

from conveyor.store.base import OutboxEntry
from conveyor.transport.kafka import KafkaPublisher, Topics
from tests.support.kafka import bootstrap, unique_prefix

PARTITIONS = 4
BATCH = 500


def _ends(address: str, topic: str) -> list[int]:
    consumer = Consumer({"bootstrap.servers": address, "group.id": f"{topic}probe"})
    try:
        return [consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in range(PARTITIONS)]
    finally:
        consumer.close()


def test_a_batch_of_unkeyed_operations_is_spread_over_every_partition() -> None:
    address = bootstrap()
    topics = Topics(address, PARTITIONS, unique_prefix("spread"))
    publisher = KafkaPublisher(topics)
    try:
        # One message first: the producer then knows the topic's partitions, as a relay
        # that has been running does (partitioning differs while it does not yet).
        asyncio.run(publisher.publish([OutboxEntry(0, "warm", "default", None, "dispatch")]))
        before = _ends(address, topics.topic("default"))
        asyncio.run(publisher.publish([OutboxEntry(i, f"op{i}", "default", None, "dispatch")
                                       for i in range(1, BATCH + 1)]))
        after = _ends(address, topics.topic("default"))
    finally:
        publisher.close()
    counts = [b - a for a, b in zip(before, after, strict=True)]
    assert sum(counts) == BATCH
    # At random, each partition gets 125 ± 10; stuck to one partition, others get ~0.
    assert min(counts) >= BATCH // PARTITIONS // 2, counts
