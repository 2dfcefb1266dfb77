"""Publishing outbox entries to Kafka: the relay's side of the transport.

The producer is idempotent with ``acks=all``: a message is durable on every in-sync
replica when :meth:`KafkaPublisher.publish` returns, and the broker drops the producer's
own retries, so a broker restart in the middle of a batch neither loses nor reorders
messages of one partition. What :meth:`publish` cannot promise (it raised, or the process
died) is retried from the outbox: duplicates, which consumers recognise as stale.
Keyed messages go to their key's partition. Unkeyed ones go in runs of at least
``spread_run`` messages over as many partitions as a batch fills that way (a small batch
on one partition, a batch of ``spread_run`` times the partitions or more on every one),
each batch starting where the last one ended: the workers of a queue share a large batch,
and each produce request, fetch and append touches few partitions at a time.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Sequence
from typing import Any

from ...errors import TransportError
from ...store.base import OutboxEntry
from .messages import encode
from .topics import Topics

log = logging.getLogger("conveyor.kafka")

SPREAD_RUN = 32
"""The default fewest unkeyed messages of a batch sent to one partition (unless the batch
is smaller; ``relay_spread_run`` in the configuration). Each partition of a request costs
the broker and the consumer their own work: B2 on the Kafka tier (single-operation jobs,
45-95 per relay batch) spread a message at a time over 12 partitions cost the broker
68-91 µs of CPU per job, and the worker 101-126; in runs of 32, 25-37 and 74-93 µs, and
B2 went from 2,354-3,162 to 2,792-3,682 jobs/s (4 pairs)."""


def spread(count: int, partitions: int, first: int, run: int = SPREAD_RUN) -> list[int]:
    """The partition of each of ``count`` unkeyed messages of a batch, in order: runs of
    at least ``run`` messages (one run if there are fewer), as even as they divide, on
    consecutive partitions from ``first`` (wrapping), at most one run per partition."""
    used = max(1, min(partitions, count // run))
    return [(first + i * used // count) % partitions for i in range(count)]


class KafkaPublisher:
    """Publishes batches of outbox entries; one batch at a time."""

    def __init__(self, topics: Topics, delivery_timeout_s: float = 60.0,
                 linger_ms: int = 5, spread_run: int = SPREAD_RUN) -> None:
        if spread_run < 1:
            raise ValueError("spread_run must be at least 1")
        self.topics = topics
        self._spread_run = spread_run
        self._delivery_timeout_s = delivery_timeout_s
        self._settings: dict[str, Any] = topics.client.settings(**{
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": linger_ms,
            "partitioner": "murmur2_random",  # Java-compatible: key -> partition
            # Unkeyed messages left to the partitioner (dead letters; the relay places
            # dispatches itself, see spread): a random partition each, not one per
            # linger window (a batch of 500 would land on one partition).
            "sticky.partitioning.linger.ms": 0,
            "message.timeout.ms": int(delivery_timeout_s * 1000),
            "reconnect.backoff.max.ms": 1000,
        })
        self._producer: Any = None
        self._lock = threading.Lock()
        self._next_partition: dict[str, int] = {}  # where a topic's next batch starts
        self._random = random.Random()

    @property
    def settings(self) -> dict[str, Any]:
        """The producer's librdkafka settings (a copy): what a benchmark of the client on
        its own must use to measure the same thing."""
        return dict(self._settings)

    def _ensure_producer(self) -> Any:
        from confluent_kafka import Producer

        if self._producer is None:
            self._producer = Producer(self._settings)
        return self._producer

    async def publish(self, entries: Sequence[OutboxEntry]) -> None:
        """Return once every entry is durable in its topic; raise
        :class:`TransportError` otherwise (some may have been published)."""
        if entries:
            await asyncio.to_thread(self._publish, list(entries))

    def _publish(self, entries: list[OutboxEntry]) -> None:
        from confluent_kafka import KafkaException

        with self._lock:
            self.topics.ensure(sorted({e.queue for e in entries}))
            producer = self._ensure_producer()
            errors: list[Any] = []

            def delivered(err: Any, _msg: Any) -> None:
                if err is not None:
                    errors.append(err)

            try:
                for entry, (topic, partition) in zip(entries, self._targets(entries),
                                                     strict=True):
                    key, value, headers = encode(entry)
                    while True:
                        try:
                            producer.produce(topic, value, key, partition, headers=headers,
                                             on_delivery=delivered)
                            break
                        except BufferError:
                            producer.poll(0.05)
                deadline = time.monotonic() + self._delivery_timeout_s + 5.0
                while producer.flush(1.0) > 0:
                    if time.monotonic() > deadline:
                        raise TransportError("Kafka did not confirm the batch in time")
            except (KafkaException, TransportError) as exc:
                errors.append(exc.args[0] if exc.args else exc)
            if errors:
                first = errors[0]
                # A new producer for the next attempt, whatever the error: one that came
                # through a broker crash can stay stuck (fatal or not) while fresh clients
                # connect fine. What the old one still holds is dropped; the outbox rows
                # are not marked, so they are published again (duplicates are harmless).
                log.warning("Kafka producer failed a batch (%s): starting a new one", first)
                producer.purge(in_queue=True, in_flight=True, blocking=False)
                self._producer = None
                raise TransportError(f"Kafka refused {len(errors)} of {len(entries)} "
                                     f"messages: {first}")

    def _targets(self, entries: list[OutboxEntry]) -> list[tuple[str, int]]:
        """Each entry's topic and partition: ``-1`` (the partitioner's choice: the key's
        partition, or for a dead letter a random one), or for an unkeyed dispatch its
        place in :func:`spread` over its topic."""
        topics = [self.topics.dlq(e.queue) if e.kind == "dead" else self.topics.topic(e.queue)
                  for e in entries]
        unkeyed: dict[str, list[int]] = {}
        for i, entry in enumerate(entries):
            if entry.kind == "dispatch" and entry.key is None:
                unkeyed.setdefault(topics[i], []).append(i)
        chosen = [-1] * len(entries)
        for topic, places in unkeyed.items():
            partitions = self.topics.partition_count(topic)
            # relays start at random partitions, so several do not move in step
            first = self._next_partition.get(topic, self._random.randrange(partitions))
            first %= partitions
            assigned = spread(len(places), partitions, first, self._spread_run)
            for place, partition in zip(places, assigned, strict=True):
                chosen[place] = partition
            self._next_partition[topic] = assigned[-1] + 1
        return list(zip(topics, chosen, strict=True))

    def close(self) -> None:
        with self._lock:
            if self._producer is not None:
                self._producer.flush(5.0)
                self._producer = None
