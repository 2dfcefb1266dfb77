"""The ``kafka`` stage ceiling: the Kafka client (confluent-kafka) and the broker on their
own, with the settings of the relay's producer and of the workers' consumers, so the Kafka
tier's figures can be read against what the log itself does on this machine.

It runs on a topic of its own (``<prefix>bench-ceiling-<random>``, the configured number
of partitions, deleted afterwards), from threads of the benchmark's process:

* **produce**: messages the size of a dispatch (the relay's encoding of an outbox entry),
  ``batch`` at a time over the partitions as the relay spreads them, each batch flushed
  (acknowledged: ``acks=all``, idempotent) before the next one is produced, as the relay
  publishes. Batches of 1, of 16 (the relay's batches at B3's rates) and of 500 (its
  largest). Messages per second, the flush's p50 and p99, and CPU per message in this
  process (librdkafka's threads included) and, when the broker's process is known (the
  Kafka tier), in the broker.
* **consume**: every message produced, read again from the start of each partition by one
  consumer with the workers' settings: messages per second and CPU per message.
* **one message through the log**: one message produced and flushed at a time, with the
  consumer already at the end of every partition, its fetch waiting at the broker. The
  p50 and p99 of the acknowledgement and of the time until the consumer has the message:
  the floor under B3's wait after the log.

Nothing here guarantees more than the client does: a message the broker refuses fails
the ceiling (its row reads "not measured" with the error), it is never counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import threading
import time
from typing import Any

from ..config import kafka_client_options, load_config
from ..store.base import OutboxEntry
from ..transport.kafka.client import KafkaClient
from ..transport.kafka.messages import encode
from ..transport.kafka.producer import KafkaPublisher, spread
from ..transport.kafka.topics import Topics
from ..wiring import kafka_settings
from .context import Deadline, Reporter
from .procstat import Sampler
from .stats import rate, summarize_ms

BATCHES = (1, 16, 500)
"""Messages per flush in the produce measurements."""
ROUND_S = 2.0
"""Seconds each measurement runs at most (bounded by a count too)."""
MAX_MESSAGES = 200_000
"""Messages produced per batch size at most."""
ROUND_TRIPS = 300
"""Messages sent through the log one at a time at most."""
WAIT_S = 10.0
"""How long a message may take to be acknowledged or to reach the consumer before the
ceiling fails."""


class KafkaCeilingError(Exception):
    """The broker did not acknowledge or deliver a message in time, or refused one."""


class _LogRun:
    """One run on its own topic: blocking client calls, each step from a thread."""

    def __init__(self, bootstrap: str) -> None:
        # Only the Kafka settings are read: whatever the tier, the store stays out of it.
        config = load_config({"transport": "store", "kafka_bootstrap": bootstrap},
                             environ=os.environ)
        settings = kafka_settings(config, KafkaClient(bootstrap, kafka_client_options(config)))
        self.client = settings.kafka_client
        self.queue = f"bench-ceiling-{secrets.token_hex(4)}"
        self.topics = Topics(self.client, settings.partitions, settings.topic_prefix)
        self.topic = self.topics.topic(self.queue)
        self.partitions = settings.partitions
        self._spread_run = config.relay_spread_run
        self._producer_settings = KafkaPublisher(self.topics,
                                                 spread_run=self._spread_run).settings
        self._consumer_settings = {
            **settings.consumer_settings(self.queue, "conveyor-bench-ceiling"),
            "group.id": f"conveyor-bench-ceiling-{secrets.token_hex(4)}"}
        self.produced = 0
        self._next_partition = 0
        self._producer: Any = None
        self._consumer: Any = None
        entry = OutboxEntry(0, "0" * 26, self.queue, None, "dispatch")
        self.key, self.value, self.headers = encode(entry)

    def open(self) -> None:
        from confluent_kafka import Producer

        self.topics.ensure([self.queue])
        self.partitions = self.topics.partition_count(self.topic)
        self._producer = Producer(self._producer_settings)

    def _flush(self, errors: list[Any]) -> None:
        deadline = time.monotonic() + WAIT_S
        while self._producer.flush(1.0) > 0:
            if time.monotonic() > deadline:
                raise KafkaCeilingError(f"the broker did not acknowledge within {WAIT_S:g} s")
        if errors:
            raise KafkaCeilingError(f"the broker refused {len(errors)} messages: {errors[0]}")

    def produce(self, batch: int, limit_s: float) -> dict[str, Any]:
        """Batches of ``batch`` messages, each flushed before the next."""
        errors: list[Any] = []
        delivered = _on_delivery(errors)
        flushes: list[float] = []
        sent = 0
        cpu_start = time.process_time()
        started = time.perf_counter()
        while time.perf_counter() - started < limit_s and sent < MAX_MESSAGES:
            targets = spread(batch, self.partitions, self._next_partition, self._spread_run)
            for partition in targets:
                self._producer.produce(self.topic, self.value, self.key, partition,
                                       headers=self.headers, on_delivery=delivered)
            flush_started = time.perf_counter()
            self._flush(errors)
            flushes.append(time.perf_counter() - flush_started)
            self._next_partition = (targets[-1] + 1) % self.partitions
            sent += batch
        seconds = time.perf_counter() - started
        self.produced += sent
        return {"batch": batch, "messages": sent, "messages_per_s": rate(sent, seconds),
                "flushes_per_s": rate(len(flushes), seconds),
                "flush_ms": summarize_ms(flushes),
                "cpu_us_per_message": _per_message(time.process_time() - cpu_start, sent)}

    def _take(self, wait_s: float) -> list[Any]:
        """As the workers' consumer takes messages: one, waiting up to ``wait_s``, then
        what the client already fetched (a call for many waits until it has them all or
        its time is up)."""
        messages: list[Any] = self._consumer.consume(1, wait_s)
        if messages:
            messages += self._consumer.consume(499, 0)
        return messages

    def consume(self, limit_s: float) -> dict[str, Any]:
        """Read every message produced so far, from the start of each partition. Timed
        from the first message (not the consumer's connection) to the last."""
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        self._consumer = Consumer(self._consumer_settings)
        self._consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING)
                               for p in range(self.partitions)])
        total = 0  # messages read
        untimed = 0  # those of the first batch, read before the clock started
        first_at: float | None = None
        cpu_start = 0.0
        deadline = time.perf_counter() + limit_s + WAIT_S
        while total < self.produced:
            if time.perf_counter() > deadline:
                raise KafkaCeilingError(f"consumed {total} of {self.produced} messages "
                                        "in time")
            n = sum(1 for m in self._take(1.0) if m.error() is None)
            if n and first_at is None:
                first_at, cpu_start, untimed = time.perf_counter(), time.process_time(), n
            total += n
        timed = total - untimed
        seconds = time.perf_counter() - (first_at or time.perf_counter())
        return {"messages": total, "messages_per_s": rate(timed, seconds),
                "cpu_us_per_message": _per_message(time.process_time() - cpu_start, timed)}

    def one_at_a_time(self, limit_s: float) -> dict[str, Any]:
        """Produce, flush, and wait for the consumer (on its own thread, at the end of
        every partition) to have the message; then the next one."""
        arrived: dict[str, float] = {}
        arrival = threading.Condition()
        stopping = threading.Event()

        def consume() -> None:
            while not stopping.is_set():
                for m in self._take(0.05):
                    if m.error() is None:
                        op_id = json.loads(m.value())["op_id"]
                        with arrival:
                            arrived[op_id] = time.perf_counter()
                            arrival.notify_all()

        reader = threading.Thread(target=consume, name="bench-kafka-consumer", daemon=True)
        reader.start()
        errors: list[Any] = []
        delivered = _on_delivery(errors)
        acks: list[float] = []
        hops: list[float] = []
        try:
            started = time.perf_counter()
            for i in range(ROUND_TRIPS):
                if time.perf_counter() - started > limit_s:
                    break
                op_id = f"trip-{i}"
                _, value, _ = encode(OutboxEntry(0, op_id, self.queue, None, "dispatch"))
                sent_at = time.perf_counter()
                self._producer.produce(self.topic, value, None, i % self.partitions,
                                       on_delivery=delivered)
                self._flush(errors)
                acks.append(time.perf_counter() - sent_at)
                with arrival:
                    if not arrival.wait_for(lambda op_id=op_id: op_id in arrived,  # type: ignore[misc]
                                            timeout=WAIT_S):
                        raise KafkaCeilingError(
                            f"a message did not reach the consumer within {WAIT_S:g} s")
                    hops.append(arrived[op_id] - sent_at)
        finally:
            stopping.set()
            reader.join(timeout=5.0)
        return {"messages": len(hops), "ack_ms": summarize_ms(acks),
                "to_consumer_ms": summarize_ms(hops)}

    def close(self) -> None:
        """Close the clients and delete the run's topics (best effort: a topic left
        behind holds only this run's messages)."""
        from confluent_kafka.admin import AdminClient

        if self._consumer is not None:
            self._consumer.close()
        if self._producer is not None:
            self._producer.flush(5.0)
        admin = AdminClient(self.client.settings())
        futures = admin.delete_topics([self.topic, self.topics.dlq(self.queue)],
                                      operation_timeout=10)
        for future in futures.values():
            with contextlib.suppress(Exception):  # a leftover topic costs nothing here
                future.result(timeout=15)


def _on_delivery(errors: list[Any]) -> Any:
    """A delivery callback that keeps the errors in ``errors``."""

    def delivered(err: Any, _msg: Any) -> None:
        if err is not None:
            errors.append(err)

    return delivered


def _per_message(cpu_s: float, messages: int) -> float | None:
    return round(cpu_s / messages * 1e6, 1) if messages > 0 else None


def _broker_us(sampler: Sampler | None, start: float, end: float, messages: int
               ) -> float | None:
    """The broker's CPU per message in ``[start, end]`` (wall clock), when the sampler
    follows it (the ``kafka`` group of the Kafka tier)."""
    if sampler is None or messages <= 0:
        return None
    cpu_s = sampler.cpu_window(start, end).get("kafka")
    return None if cpu_s is None else _per_message(cpu_s, messages)


async def kafka_ceiling(bootstrap: str, reporter: Reporter, deadline: Deadline,
                        sampler: Sampler | None = None) -> dict[str, Any]:
    """Measure the log on its own (see the module); raises when the broker fails it."""
    run = _LogRun(bootstrap)
    phase = reporter.phase("ceiling: kafka", len(BATCHES) + 2)
    produce: dict[str, Any] = {}
    try:
        await asyncio.to_thread(run.open)
        for i, batch in enumerate(BATCHES, 1):
            deadline.check("kafka ceiling")
            start = time.time()
            produced = await asyncio.to_thread(run.produce, batch,
                                               max(0.1, min(ROUND_S, deadline.left())))
            produced["broker_cpu_us_per_message"] = _broker_us(
                sampler, start, time.time(), produced["messages"])
            produce[str(batch)] = produced
            phase.update(i)
        deadline.check("kafka ceiling")
        consumed = await asyncio.to_thread(run.consume, ROUND_S)
        phase.update(len(BATCHES) + 1)
        deadline.check("kafka ceiling")
        one = await asyncio.to_thread(run.one_at_a_time, min(ROUND_S, deadline.left()))
        phase.update(len(BATCHES) + 2)
    finally:
        phase.done()
        await asyncio.to_thread(run.close)
    return {"topic": run.topic, "partitions": run.partitions,
            "message_bytes": len(run.value), "produce": produce, "consume": consumed,
            "one_message": one}
