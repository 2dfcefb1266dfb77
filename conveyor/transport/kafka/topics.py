"""Topics of the Kafka tier: one per queue (plus its ``.dlq``), created when missing.

A topic that exists with fewer partitions than configured is refused with a clear error
(adding partitions would move keys to other partitions and break per-key order).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from ...errors import TransportError
from .client import KafkaClient, as_client
from .messages import dlq_topic_name, topic_name

log = logging.getLogger("conveyor.kafka")


class TopicMismatch(TransportError):
    """A topic exists with fewer partitions than configured: retrying cannot help."""


class Topics:
    """Creates and checks the topics of queues (blocking calls: run them in a thread)."""

    def __init__(self, client: KafkaClient | str, partitions: int, prefix: str,
                 replication_factor: int = -1, timeout_s: float = 30.0,
                 probe_s: float = 5.0) -> None:
        from confluent_kafka.admin import AdminClient

        self.client = as_client(client)
        self.bootstrap = self.client.bootstrap
        self.partitions = partitions
        self.prefix = prefix
        self._replication = replication_factor
        self._timeout_s = timeout_s
        self._probe_s = probe_s
        """How long :meth:`ensure` first waits for any answer: an unreachable cluster
        fails fast (and a process waiting for it still stops promptly)."""
        self._admin = AdminClient(self.client.settings(**{"reconnect.backoff.max.ms": 1000}))
        self._counts: dict[str, int] = {}  # partitions of the topics ensured (checked)
        self._lock = threading.Lock()

    def topic(self, queue: str) -> str:
        return topic_name(self.prefix, queue)

    def dlq(self, queue: str) -> str:
        return dlq_topic_name(self.prefix, queue)

    def _both(self, queues: Sequence[str]) -> list[str]:
        """Each queue's topic and dead-letter topic."""
        return [t for q in queues for t in (self.topic(q), self.dlq(q))]

    def ensure(self, queues: Sequence[str]) -> None:
        """Make sure every queue's topic and dead-letter topic exist (idempotent, safe
        from several processes at once). Raises :class:`TransportError`."""
        with self._lock:
            missing = [t for t in self._both(queues) if t not in self._counts]
            if missing:
                try:
                    self._ensure(missing)
                finally:
                    self._admin.poll(0)  # hand queued client log lines to ``logging``

    def partition_count(self, topic: str) -> int:
        """Partitions of ``topic`` as :meth:`ensure` found it (the configured count for a
        topic not ensured by this process)."""
        return self._counts.get(topic, self.partitions)

    def forget(self, queues: Sequence[str] | None = None) -> None:
        """Check again next time (e.g. after a topic was deleted)."""
        with self._lock:
            if queues is None:
                self._counts.clear()
            else:
                for topic in self._both(queues):
                    self._counts.pop(topic, None)

    def check_reachable(self, timeout_s: float) -> None:
        """Raise :class:`TransportError` unless a broker answers within ``timeout_s``."""
        try:
            self._metadata(timeout_s)
        finally:
            self._admin.poll(0)  # hand queued client log lines to ``logging``

    def _metadata(self, timeout_s: float) -> Any:
        from confluent_kafka import KafkaException

        try:
            meta = self._admin.list_topics(timeout=timeout_s)
        except KafkaException as exc:
            raise TransportError(f"Kafka at {self.bootstrap} does not answer: {exc}") from exc
        if not meta.brokers:
            raise TransportError(f"Kafka at {self.bootstrap} has no brokers")
        return meta

    def partition_counts(self, topics: Sequence[str],
                         timeout_s: float | None = None) -> dict[str, int]:
        """Partitions of each existing topic among ``topics``."""
        meta = self._metadata(self._timeout_s if timeout_s is None else timeout_s)
        return {name: len(t.partitions) for name, t in meta.topics.items()
                if name in topics and t.error is None}

    def _ensure(self, topics: list[str]) -> None:
        from confluent_kafka import KafkaError, KafkaException
        from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

        existing = self.partition_counts(topics, self._probe_s)
        to_create = [t for t in topics if t not in existing]
        if to_create:
            futures = self._admin.create_topics(
                [NewTopic(t, num_partitions=self.partitions,
                          replication_factor=self._replication) for t in to_create],
                operation_timeout=self._timeout_s, request_timeout=self._timeout_s)
            for name, future in futures.items():
                try:
                    future.result(timeout=self._timeout_s)
                    log.info("created topic %s with %d partitions", name, self.partitions)
                except KafkaException as exc:
                    if exc.args and exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
                        continue
                    raise TransportError(f"cannot create Kafka topic {name}: {exc}") from exc
            deadline = time.monotonic() + self._timeout_s
            existing = self.partition_counts(topics)
            while any(t not in existing for t in topics) and time.monotonic() < deadline:
                time.sleep(0.1)  # metadata of new topics takes a moment to propagate
                existing = self.partition_counts(topics)
        for name in topics:
            count = existing.get(name)
            if count is None:
                raise TransportError(f"Kafka topic {name} was created but is not visible")
            if count < self.partitions and not name.endswith(".dlq"):
                raise TopicMismatch(
                    f"Kafka topic {name} has {count} partitions, fewer than the "
                    f"{self.partitions} configured (--kafka-partitions); use a new "
                    f"--kafka-topic-prefix or lower the setting (adding partitions to the "
                    f"topic would move keys and break per-key order)")
            self._counts[name] = count
