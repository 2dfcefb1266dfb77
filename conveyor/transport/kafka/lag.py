"""Consumer lag of each queue's group, per partition: how many messages the group has
not committed past yet (end offset minus committed offset)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ...errors import TransportError
from .client import KafkaClient, as_client
from .messages import group_id, topic_name


@dataclass(frozen=True, slots=True)
class PartitionLag:
    queue: str
    partition: int
    end_offset: int
    committed: int | None
    """``None`` when the group never committed on this partition."""
    lag: int

    def to_json(self) -> dict[str, Any]:
        return {"partition": self.partition, "end_offset": self.end_offset,
                "committed": self.committed, "lag": self.lag}


class KafkaLag:
    """Reads committed offsets and end offsets; results are cached for ``cache_s``."""

    def __init__(self, client: KafkaClient | str, prefix: str, timeout_s: float = 5.0,
                 cache_s: float = 1.0) -> None:
        self.client = as_client(client)
        self.bootstrap = self.client.bootstrap
        self.prefix = prefix
        self._timeout_s = timeout_s
        self._cache_s = cache_s
        self._consumers: dict[str, Any] = {}
        self._cache: dict[tuple[str, ...], tuple[float, list[PartitionLag]]] = {}
        self._lock = threading.Lock()

    async def measure(self, queues: Sequence[str]) -> list[PartitionLag]:
        """Lag of every partition of the queues' topics (missing topics are left out).
        Raises :class:`TransportError` when Kafka does not answer."""
        key = tuple(sorted(set(queues)))
        cached = self._cache.get(key)
        if cached is not None and time.monotonic() - cached[0] < self._cache_s:
            return cached[1]
        found = await asyncio.to_thread(self._measure, key)
        self._cache[key] = (time.monotonic(), found)
        return found

    def _consumer(self, queue: str) -> Any:
        from confluent_kafka import Consumer

        consumer = self._consumers.get(queue)
        if consumer is None:
            consumer = self._consumers[queue] = Consumer(self.client.settings(**{
                "group.id": group_id(self.prefix, queue), "enable.auto.commit": False}))
        return consumer

    def _measure(self, queues: tuple[str, ...]) -> list[PartitionLag]:
        from confluent_kafka import KafkaException, TopicPartition

        out: list[PartitionLag] = []
        with self._lock:
            try:
                for queue in queues:
                    consumer = self._consumer(queue)
                    topic = topic_name(self.prefix, queue)
                    meta = consumer.list_topics(topic, timeout=self._timeout_s)
                    info = meta.topics.get(topic)
                    if info is None or info.error is not None:
                        continue
                    tps = [TopicPartition(topic, p) for p in sorted(info.partitions)]
                    committed = consumer.committed(tps, timeout=self._timeout_s)
                    for tp in committed:
                        low, high = consumer.get_watermark_offsets(
                            TopicPartition(topic, tp.partition), timeout=self._timeout_s)
                        done = tp.offset if tp.offset >= 0 else None
                        lag = max(0, high - (done if done is not None else low))
                        out.append(PartitionLag(queue, tp.partition, high, done, lag))
            except KafkaException as exc:
                self._serve_logs()
                raise TransportError(f"Kafka at {self.bootstrap} does not answer: "
                                     f"{exc}") from exc
            self._serve_logs()
        return out

    def _serve_logs(self) -> None:
        """Hand the clients' queued log lines to ``logging`` (they never poll otherwise)."""
        for consumer in self._consumers.values():
            consumer.poll(0)

    def close(self) -> None:
        with self._lock:
            for consumer in self._consumers.values():
                consumer.close()
            self._consumers.clear()
