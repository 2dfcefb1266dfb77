"""The Kafka transport: operations reach workers through one topic per queue.

* ``start`` makes sure the topics exist and joins each queue's consumer group (all
  workers of a queue share one group; partitions are spread with cooperative-sticky
  assignment). While no broker answers it waits and retries with capped exponential
  backoff (one log line per attempt; :attr:`KafkaTransport.not_ready` says why, for
  readiness), and it returns without joining once ``stopping`` is set, so a process
  waiting for its broker still stops at once on SIGTERM.
* ``receive`` leases the buffered messages' operations in the store
  (:meth:`OutboxStore.claim_delivered`): the lease, its fencing token and the per-key
  order check stay in PostgreSQL, so the recorded outcome is exactly-once whatever Kafka
  redelivers. Stale messages (finished, running elsewhere, not due) are skipped; those
  held back by an earlier open operation of their key are parked (re-published later
  through the outbox), so a backoff never blocks a partition.
* ``ack`` (called once outcomes are durable) lets the consumer commit offsets below the
  lowest unfinished one of each partition, and starts the key's next message.

Messages get to Kafka through the outbox and :class:`conveyor.relay.Relay`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

from ...errors import TransportError
from ...model import Claim
from ...store.base import OutboxStore
from ...waiting import wait_event
from .client import KafkaClient
from .consumer import FETCH_BACKOFF_MS, Entry, QueueConsumer
from .messages import group_id
from .topics import TopicMismatch, Topics

log = logging.getLogger("conveyor.kafka")


@dataclasses.dataclass(frozen=True, slots=True)
class KafkaSettings:
    """How to reach Kafka and shape its topics and groups (from :class:`Config`)."""

    bootstrap: str
    partitions: int = 12
    topic_prefix: str = "conveyor."
    session_timeout_s: float = 10.0
    park_s: float = 0.5
    """Delay before an operation held back by its key is delivered again."""
    max_buffer: int = 5000
    """Messages buffered per queue (and prefetched per partition by the client) before
    the consumer stops taking more; see :mod:`.consumer`."""
    drain_s: float = 10.0
    """How long a revoked partition's running operations get to finish."""
    replication_factor: int = -1
    """For topics this process creates; -1 is the broker's default."""
    max_poll_interval_s: float = 300.0
    """Kafka's limit between polls; the consumer thread polls continuously, so slow tasks
    never reach it."""
    start_backoff_s: float = 0.5
    """First wait between start-up attempts while no broker answers; doubles each time."""
    start_backoff_max_s: float = 5.0
    """Longest wait between start-up attempts."""
    start_probe_s: float = 2.0
    """How long one start-up attempt waits for a broker's answer."""
    client: KafkaClient | None = None
    """Shared client settings and log; ``None``: plain ``bootstrap``, a log of its own."""

    def __post_init__(self) -> None:
        if self.client is None:
            object.__setattr__(self, "client", KafkaClient(self.bootstrap))

    @property
    def kafka_client(self) -> KafkaClient:
        assert self.client is not None  # set by __post_init__
        return self.client

    def consumer_settings(self, queue: str, client_id: str) -> dict[str, Any]:
        return self.kafka_client.settings(**{
            "group.id": group_id(self.topic_prefix, queue),
            "client.id": client_id,
            "partition.assignment.strategy": "cooperative-sticky",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": int(self.session_timeout_s * 1000),
            "heartbeat.interval.ms": max(100, int(self.session_timeout_s * 1000 / 5)),
            "max.poll.interval.ms": int(self.max_poll_interval_s * 1000),
            "reconnect.backoff.max.ms": 1000,
            # The broker answers a waiting fetch as soon as a message arrives, so a long
            # wait adds no latency; a short one only makes idle consumers ask more often
            # (50 ms cost the broker more CPU, and B3 was no faster).
            "fetch.wait.max.ms": 500,
            "queued.min.messages": self.max_buffer,
            "fetch.queue.backoff.ms": FETCH_BACKOFF_MS,
        })


class KafkaTransport:
    """The :class:`~conveyor.transport.base.Transport` port on Kafka."""

    def __init__(self, store: OutboxStore, settings: KafkaSettings,
                 topics: Topics | None = None, *,
                 stopping: asyncio.Event | None = None) -> None:
        self._store = store
        self.settings = settings
        self.topics = topics or Topics(settings.kafka_client, settings.partitions,
                                       settings.topic_prefix, settings.replication_factor)
        self._stopping = stopping or asyncio.Event()
        self.not_ready: str | None = "not started"
        """Why this transport does not deliver yet (``None`` once it does)."""
        self.start_attempts = 0
        self._consumers: list[QueueConsumer] = []
        self._worker_id = ""
        self._wakeup = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._next = 0

    async def start(self, queues: Sequence[str], worker_id: str) -> None:
        self._loop = asyncio.get_running_loop()
        self._worker_id = worker_id
        if not await self._until_topics(list(queues)):
            self.not_ready = "stopped before Kafka answered"
            return
        for queue in queues:
            consumer = QueueConsumer(
                self.settings.consumer_settings(queue, worker_id), self.topics.topic(queue),
                wake=self._wake_threadsafe, max_buffer=self.settings.max_buffer,
                drain_s=self.settings.drain_s)
            consumer.start()
            self._consumers.append(consumer)
        self.not_ready = None

    async def _until_topics(self, queues: list[str]) -> bool:
        """Ensure the queues' topics, retrying while no broker answers; ``False`` if
        ``stopping`` was set first. A topic with too few partitions raises at once."""
        s = self.settings
        delay_s = s.start_backoff_s
        while not self._stopping.is_set():
            self.start_attempts += 1
            try:
                await asyncio.to_thread(self._reach_and_ensure, queues)
            except TopicMismatch:
                raise
            except TransportError as exc:
                client_error = s.kafka_client.log.last_error()
                self.not_ready = f"waiting for Kafka: {exc}" + (
                    f" (client: {client_error})" if client_error else "")
                log.warning("waiting for Kafka at %s (attempt %d, next in %.1f s): %s",
                            s.kafka_client.shown(), self.start_attempts, delay_s, exc)
                await wait_event(self._stopping, delay_s)
                delay_s = min(delay_s * 2, s.start_backoff_max_s)
                continue
            if self.start_attempts > 1:
                log.info("Kafka at %s answers after %d attempts", s.kafka_client.shown(),
                         self.start_attempts)
            return True
        return False

    def _reach_and_ensure(self, queues: list[str]) -> None:
        self.topics.check_reachable(self.settings.start_probe_s)
        self.topics.ensure(queues)

    def _wake_threadsafe(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._wakeup.set)

    def _take(self, max_n: int) -> list[tuple[QueueConsumer, Entry]]:
        taken: list[tuple[QueueConsumer, Entry]] = []
        n = len(self._consumers)
        for i in range(n):  # round robin over queues
            consumer = self._consumers[(self._next + i) % n]
            taken.extend((consumer, e) for e in consumer.take(max_n - len(taken)))
            if len(taken) >= max_n:
                break
        self._next = (self._next + 1) % max(n, 1)
        return taken

    async def receive(self, max_n: int, lease_s: float, wait_s: float) -> list[Claim]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while True:
            self._wakeup.clear()
            taken = self._take(max_n)
            if taken:
                claims = await self._claim(taken, lease_s)
                if claims:
                    return claims
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            await wait_event(self._wakeup, remaining)

    async def _claim(self, taken: list[tuple[QueueConsumer, Entry]],
                     lease_s: float) -> list[Claim]:
        try:
            delivered = await self._store.claim_delivered(
                [e.op_id for _, e in taken], self._worker_id, lease_s, self.settings.park_s)
        except BaseException:
            by_consumer: dict[int, tuple[QueueConsumer, list[Entry]]] = {}
            for consumer, entry in taken:
                by_consumer.setdefault(id(consumer), (consumer, []))[1].append(entry)
            for consumer, entries in by_consumer.values():
                consumer.untake(entries)
            raise
        by_id = {c.op_id: c for c in delivered.claims}
        claims = []
        for consumer, entry in taken:
            claim = by_id.pop(entry.op_id, None)
            if claim is None:
                consumer.finish(entry)  # stale, a duplicate, or parked (durably)
                continue
            headers = {**entry.headers, **claim.headers}
            claims.append(claim.delivered((consumer, entry), headers))
        return claims

    async def ack(self, claims: Sequence[Claim]) -> None:
        for claim in claims:
            delivery = claim.delivery
            if isinstance(delivery, tuple) and len(delivery) == 2:
                consumer, entry = delivery
                if isinstance(consumer, QueueConsumer) and isinstance(entry, Entry):
                    consumer.finish(entry)
        if any(c.has_ready() for c in self._consumers):
            self._wakeup.set()

    async def wake(self) -> None:
        self._wakeup.set()

    async def close(self) -> None:
        self._wakeup.set()
        consumers, self._consumers = self._consumers, []
        await asyncio.gather(*(c.close() for c in consumers))

    def flow(self) -> dict[str, tuple[int, bool]]:
        """Per topic: messages buffered, and whether its partitions are paused (for tests
        and diagnostics)."""
        return {c.topic: (c.buffered, c.paused) for c in self._consumers}

    def assigned(self) -> list[tuple[str, int]]:
        """Partitions this process holds now (for tests and diagnostics)."""
        return sorted(tp for c in self._consumers for tp in c.assigned)
