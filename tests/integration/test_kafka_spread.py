"""Unkeyed operations are spread over a topic's partitions in runs: a large relay batch
covers every partition (so every worker holding one gets a share), a small one lands on
one partition, and consecutive batches move on to the next partitions."""

from __future__ import annotations

import asyncio

from confluent_kafka import Consumer, TopicPartition

from conveyor.store.base import OutboxEntry
from conveyor.transport.kafka import KafkaPublisher, Topics
from conveyor.transport.kafka.producer import SPREAD_RUN
from tests.support.kafka import bootstrap, unique_prefix

PARTITIONS = 4
BATCH = 500


def _ends(address: str, topic: str, partitions: int = PARTITIONS) -> list[int]:
    consumer = Consumer({"bootstrap.servers": address, "group.id": f"{topic}probe"})
    try:
        return [consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in range(partitions)]
    finally:
        consumer.close()


def _batch(start: int, count: int) -> list[OutboxEntry]:
    return [OutboxEntry(i, f"op{i}", "default", None, "dispatch")
            for i in range(start, start + count)]


def test_unkeyed_batches_are_spread_in_runs_over_the_partitions() -> None:
    address = bootstrap()
    topics = Topics(address, PARTITIONS, unique_prefix("spread"))
    topic = topics.topic("default")
    publisher = KafkaPublisher(topics)
    try:
        asyncio.run(publisher.publish(_batch(0, BATCH)))
        large = _ends(address, topic)
        small = []
        for n in range(PARTITIONS):
            asyncio.run(publisher.publish(_batch(BATCH + n * SPREAD_RUN, SPREAD_RUN - 1)))
            small.append(_ends(address, topic))
    finally:
        publisher.close()
    assert large == [BATCH // PARTITIONS] * PARTITIONS  # one run on every partition
    landed = [[b - a for a, b in zip(before, after, strict=True)]
              for before, after in zip([large, *small], small, strict=False)]
    # each small batch on one partition, the next batch on the next one
    first = landed[0].index(SPREAD_RUN - 1)
    assert [counts.index(SPREAD_RUN - 1) for counts in landed] == [
        (first + n) % PARTITIONS for n in range(PARTITIONS)]
    assert all(sorted(counts) == [0] * (PARTITIONS - 1) + [SPREAD_RUN - 1]
               for counts in landed), landed


def test_runs_cover_a_topic_made_with_more_partitions_than_configured() -> None:
    """A topic created elsewhere with more partitions is spread over all of them."""
    address, prefix, more = bootstrap(), unique_prefix("spread-more"), PARTITIONS + 2
    Topics(address, more, prefix).ensure(["default"])  # made by someone else
    topics = Topics(address, PARTITIONS, prefix)
    publisher = KafkaPublisher(topics)
    try:
        asyncio.run(publisher.publish(_batch(0, SPREAD_RUN * more)))
    finally:
        publisher.close()
    assert _ends(address, topics.topic("default"), more) == [SPREAD_RUN] * more


def test_a_configured_run_spreads_a_smaller_batch_over_every_partition() -> None:
    """``relay_spread_run`` 8: a batch of 8 per partition reaches all of them, where the
    default run would have put it on one."""
    address, run = bootstrap(), 8
    topics = Topics(address, PARTITIONS, unique_prefix("spread-run"))
    publisher = KafkaPublisher(topics, spread_run=run)
    try:
        asyncio.run(publisher.publish(_batch(0, run * PARTITIONS)))
    finally:
        publisher.close()
    assert run * PARTITIONS < SPREAD_RUN * 2  # the default would use one partition
    assert _ends(address, topics.topic("default")) == [run] * PARTITIONS
