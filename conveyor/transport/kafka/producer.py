"""Publishing outbox entries to Kafka: the relay's side of the transport.

The producer is idempotent with ``acks=all``: a message is durable on every in-sync
replica when :meth:`KafkaPublisher.publish` returns, and the broker drops the producer's
own retries, so a broker restart in the middle of a batch neither loses nor reorders
messages of one partition. What :meth:`publish` cannot promise (it raised, or the process
died) is retried from the outbox: duplicates, which consumers recognise as stale.
Unkeyed messages go to a random partition each, so the workers of a queue share a batch.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from ...errors import TransportError
from ...store.base import OutboxEntry
from .messages import encode
from .topics import Topics

log = logging.getLogger("conveyor.kafka")


class KafkaPublisher:
    """Publishes batches of outbox entries; one batch at a time."""

    def __init__(self, topics: Topics, delivery_timeout_s: float = 60.0,
                 linger_ms: int = 5) -> None:
        self.topics = topics
        self._delivery_timeout_s = delivery_timeout_s
        self._settings: dict[str, Any] = topics.client.settings(**{
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": linger_ms,
            "partitioner": "murmur2_random",  # Java-compatible: key -> partition
            # Unkeyed messages: a random partition each. By default they stick to one
            # partition per linger window, so a relay batch of 500 landed mostly on one
            # partition and the one worker holding it had the work while others idled.
            "sticky.partitioning.linger.ms": 0,
            "message.timeout.ms": int(delivery_timeout_s * 1000),
            "reconnect.backoff.max.ms": 1000,
        })
        self._producer: Any = None
        self._lock = threading.Lock()

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
                for entry in entries:
                    key, value, headers = encode(entry)
                    topic = (self.topics.dlq(entry.queue) if entry.kind == "dead"
                             else self.topics.topic(entry.queue))
                    while True:
                        try:
                            producer.produce(topic, value, key, headers=headers,
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

    def close(self) -> None:
        with self._lock:
            if self._producer is not None:
                self._producer.flush(5.0)
                self._producer = None
