"""One queue's membership of its consumer group: a polling thread and the messages it
buffered, in the order they may start.

The thread polls all the time (also while every task is busy or slow), so the worker is
never kicked out of the group for not polling and serves rebalances at once. It also
commits offsets: per partition, the lowest offset whose outcome is not yet durable (see
:mod:`.offsets`).

Flow control: the client prefetches at most ``max_buffer`` messages per partition (its
own queue, refilled within :data:`FETCH_BACKOFF_MS` once it has room). While this
buffer holds ``max_buffer`` messages the thread takes one message per :data:`POLL_S` at
most (its poll), and as soon as the worker takes some it goes on: the next messages are
already in the client, so a drain never waits for a fetch. Only a buffer that still grows
past twice ``max_buffer`` (a worker stuck for minutes) pauses its partitions; pausing
drops the client's prefetch, and a resumed fetch started up to a second late, which is
why it is not the normal brake.

Order: messages of one key stay in partition order: one of them is handed out at a time,
the next only once the previous one finished (its outcome recorded, or found stale).
Different keys start in parallel.

Rebalance (cooperative-sticky): a revoked partition's buffered messages are dropped
(the next owner reads them from the committed offset), the ones being run get up to
``drain_s`` to finish, then the final offset is committed. Work still running after that
is abandoned safely: its lease in the store stays fenced, the next owner finds its
message stale (running elsewhere) and the outcome is recorded once, by whoever holds
the lease. Lost partitions (the session expired) are dropped without a commit.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .messages import decode
from .offsets import OffsetTracker, TopicPartition

log = logging.getLogger("conveyor.kafka")

BATCH = 500
"""Messages taken from the client's queue per loop at most."""
POLL_S = 0.1
"""How long one loop waits for a first message (and so how often an idle consumer
commits and applies flow control)."""
FETCH_BACKOFF_MS = 50
"""How soon the client looks again at a partition whose prefetch queue was full, to fetch
once it has room (the client's default is a second)."""
COMMIT_INTERVAL_S = 0.25
"""Offsets are committed (synchronously) at most this often. Each commit is a write to
the broker's offsets log: every 50 ms it cost the broker ~0.03 cores while a worker
drained, taken from the tasks on a small machine. A longer interval re-reads more
finished messages after a crash, which are skipped as stale (their outcome is in the
store); a revoked partition is still committed at once."""


@dataclass(eq=False, slots=True)
class Entry:
    """One buffered message: the operation it points at and where it came from."""

    op_id: str
    key: str | None
    tp: TopicPartition
    offset: int
    epoch: int
    headers: dict[str, str]


class QueueConsumer:
    """The consumer of one queue's topic in the queue's group."""

    def __init__(self, settings: dict[str, Any], topic: str, *, wake: Callable[[], None],
                 max_buffer: int = 5000, drain_s: float = 10.0) -> None:
        self.topic = topic
        self._settings = settings
        self._wake = wake
        self._max_buffer = max_buffer
        self._drain_s = drain_s
        self._lock = threading.Lock()
        self._tracker = OffsetTracker()
        self._ready: collections.deque[Entry] = collections.deque()
        self._held: dict[str, collections.deque[Entry]] = {}
        self._busy: set[str] = set()
        self._taken: set[Entry] = set()
        self._buffered = 0
        self._paused = False
        self._room = threading.Event()
        """Set when the worker takes messages from a full buffer."""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._consumer: Any = None
        self.assigned: set[TopicPartition] = set()
        self.errors = 0

    # thread side ----------------------------------------------------------------------
    def start(self) -> None:
        from confluent_kafka import Consumer

        self._consumer = Consumer(self._settings)
        self._consumer.subscribe([self.topic], on_assign=self._on_assign,
                                 on_revoke=self._on_revoke, on_lost=self._on_lost)
        self._thread = threading.Thread(target=self._run, name=f"kafka-{self.topic}",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        consumer = self._consumer
        last_error_log = 0.0
        next_commit = 0.0
        try:
            while not self._stop.is_set():
                try:
                    messages = self._next_messages(consumer)
                except Exception as exc:  # a closed or failed consumer: keep trying
                    log.warning("kafka consume failed: %s", exc)
                    time.sleep(0.5)
                    continue
                try:
                    good = []
                    for message in messages:
                        err = message.error()
                        if err is None:
                            good.append(message)
                        elif time.monotonic() - last_error_log > 5.0:
                            self.errors += 1
                            last_error_log = time.monotonic()
                            log.warning("kafka consumer of %s: %s", self.topic, err)
                    if good:
                        self._buffer(good)
                        self._wake()
                    self._flow_control()
                    if time.monotonic() >= next_commit:  # one synchronous commit per
                        self._commit()                     # COMMIT_INTERVAL_S at most
                        next_commit = time.monotonic() + COMMIT_INTERVAL_S
                except Exception:  # keep the membership whatever happened; say so
                    log.exception("kafka consumer of %s", self.topic)
                    time.sleep(0.5)
        finally:
            try:
                consumer.close()  # revokes (drains and commits) what is still assigned
            except Exception as exc:
                log.warning("closing the kafka consumer of %s: %s", self.topic, exc)

    def _next_messages(self, consumer: Any) -> list[Any]:
        """Messages to buffer: what the client holds, up to the buffer's room; one at most
        per :data:`POLL_S` while the buffer is full (the poll that keeps the membership)."""
        self._room.clear()
        with self._lock:
            room = self._max_buffer - self._buffered
        if room <= 0 and self._room.wait(POLL_S):
            return []  # the worker took some: go on with room
        # Wait for one message only, then take what is already fetched: a batch call
        # waits its whole timeout unless the batch fills, which at low rates added
        # ~100 ms to every operation's start.
        messages: list[Any] = consumer.consume(1, POLL_S if room > 0 else 0)
        if messages and room > 1:
            messages += consumer.consume(min(BATCH, room) - 1, 0)
        return messages

    def _buffer(self, messages: list[Any]) -> None:
        with self._lock:
            for message in messages:
                tp = (message.topic(), message.partition())
                offset = message.offset()
                epoch = self._tracker.add(tp, offset)
                decoded = decode(message.key(), message.value(), message.headers())
                if decoded is None:
                    self._tracker.finish(tp, epoch, offset)
                    continue
                entry = Entry(decoded.op_id, decoded.key, tp, offset, epoch, decoded.headers)
                self._buffered += 1
                self._place(entry)

    def _place(self, entry: Entry) -> None:
        key = entry.key
        if key is None:
            self._ready.append(entry)
        elif key in self._busy:
            self._held.setdefault(key, collections.deque()).append(entry)
        else:
            self._busy.add(key)
            self._ready.append(entry)

    def _flow_control(self) -> None:
        from confluent_kafka import TopicPartition as KafkaTP

        with self._lock:
            buffered = self._buffered
        try:
            if not self._paused and buffered >= 2 * self._max_buffer:
                self._consumer.pause(self._consumer.assignment())
                self._paused = True
            elif self._paused and buffered < self._max_buffer:
                self._consumer.resume([KafkaTP(t, p) for t, p in self.assigned])
                self._paused = False
        except Exception as exc:
            log.debug("pause/resume: %s", exc)

    def _commit(self, only: list[TopicPartition] | None = None) -> None:
        from confluent_kafka import KafkaException
        from confluent_kafka import TopicPartition as KafkaTP

        with self._lock:
            offsets = self._tracker.to_commit()
        if only is not None:
            offsets = {tp: o for tp, o in offsets.items() if tp in only}
        if not offsets:
            return
        try:
            self._consumer.commit(offsets=[KafkaTP(t, p, o) for (t, p), o in offsets.items()],
                                  asynchronous=False)
        except KafkaException as exc:
            log.debug("kafka commit failed (retried): %s", exc)
            return
        with self._lock:
            self._tracker.committed(offsets)

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        with self._lock:
            for p in partitions:
                tp = (p.topic, p.partition)
                self._tracker.assign(tp)
                self.assigned.add(tp)
        log.info("kafka: assigned %s", _names(partitions))
        # Assign here rather than after this callback, so that everything assigned can be
        # resumed: a partition this consumer paused (a full buffer), lost (its session
        # expired) and got back comes back paused, and would never be fetched again.
        # Flow control pauses again if the buffer is still full.
        try:
            consumer.incremental_assign(partitions)
            consumer.resume(consumer.assignment())
        except Exception as exc:
            log.warning("kafka: resuming %s after the assignment failed: %s",
                        _names(partitions), exc)
        self._paused = False

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        tps = [(p.topic, p.partition) for p in partitions]
        with self._lock:
            self._drop(tps)
        deadline = time.monotonic() + self._drain_s
        while time.monotonic() < deadline:
            with self._lock:
                running = sum(1 for e in self._taken if e.tp in tps)
            if not running:
                break
            time.sleep(0.02)
        self._commit(only=tps)
        with self._lock:
            for tp in tps:
                self._tracker.revoke(tp)
                self.assigned.discard(tp)
        log.info("kafka: revoked %s", _names(partitions))

    def _on_lost(self, consumer: Any, partitions: list[Any]) -> None:
        tps = [(p.topic, p.partition) for p in partitions]
        with self._lock:
            self._drop(tps)
            for tp in tps:
                self._tracker.revoke(tp)
                self.assigned.discard(tp)
        log.warning("kafka: lost %s (session expired)", _names(partitions))

    def _drop(self, tps: list[TopicPartition]) -> None:
        """Forget the buffered messages of ``tps`` (lock held); rebuild the key state."""
        remaining = [e for e in self._ready if e.tp not in tps]
        for queue in self._held.values():
            remaining.extend(e for e in queue if e.tp not in tps)
        self._buffered = len(remaining)
        self._ready.clear()
        self._held.clear()
        self._busy = {e.key for e in self._taken if e.key is not None}
        for entry in sorted(remaining, key=lambda e: (e.tp, e.offset)):
            self._place(entry)

    # event-loop side --------------------------------------------------------------------
    def take(self, max_n: int) -> list[Entry]:
        """Up to ``max_n`` buffered messages that may start now."""
        with self._lock:
            out: list[Entry] = []
            while self._ready and len(out) < max_n:
                entry = self._ready.popleft()
                self._taken.add(entry)
                out.append(entry)
            self._buffered -= len(out)
            if out and self._buffered < self._max_buffer:
                self._room.set()
            return out

    def untake(self, entries: list[Entry]) -> None:
        """Put messages back at the front (their claim could not be attempted)."""
        with self._lock:
            for entry in reversed(entries):
                if entry in self._taken:
                    self._taken.discard(entry)
                    self._ready.appendleft(entry)
                    self._buffered += 1

    def finish(self, entry: Entry) -> None:
        """The message's outcome is durable, or it was stale: its offset may be
        committed and the next message of its key may start."""
        with self._lock:
            if entry not in self._taken:
                return
            self._taken.discard(entry)
            self._tracker.finish(entry.tp, entry.epoch, entry.offset)
            key = entry.key
            if key is not None:
                waiting = self._held.get(key)
                if waiting:
                    self._ready.append(waiting.popleft())
                    if not waiting:
                        del self._held[key]
                else:
                    self._busy.discard(key)

    @property
    def buffered(self) -> int:
        """Messages held and not yet taken."""
        with self._lock:
            return self._buffered

    @property
    def paused(self) -> bool:
        """Whether this consumer's partitions are paused (a buffer past twice its size)."""
        return self._paused

    def has_ready(self) -> bool:
        with self._lock:
            return bool(self._ready)

    async def close(self) -> None:
        """Leave the group, committing what is finished; work still taken then is
        abandoned (the worker has finished or released everything it wanted to)."""
        self._drain_s = 0.0
        self._stop.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 60.0)


def _names(partitions: list[Any]) -> str:
    return ", ".join(f"{p.topic}[{p.partition}]" for p in partitions) or "nothing"
