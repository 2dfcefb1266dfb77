"""Where B3's wait went on the Kafka tier: until each operation's message was in the log,
and from the log to the operation's start.

An operation's enqueue-to-start is ``started_at - created_at``, both from the store. Its
message carries a third time: its Kafka timestamp, set by the relay's producer when the
relay handed the message over (``CreateTime``, whole milliseconds). After the open loop,
:func:`publish_times` reads the queue's topic from the loop's start on and finds each
sampled operation's first message (afterwards, so the reading takes nothing from the
system measured); :func:`split` then divides each wait in two:

* **to the log**: the store's insert, the relay's wake-up and claim, up to the produce call;
* **log to start**: the broker's acknowledgement and fetch, the worker's queue and its lease.

All three times come from one machine's clock when the tier runs on one machine (the
benchmark's own tiers); on several, their clocks' offsets are in the figures.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from ..transport.kafka.messages import decode
from .stats import summarize_ms

READ_BATCH = 1000
"""Messages taken from the client per call while reading the topic back."""


def publish_times(settings: Mapping[str, Any], topic: str, since_s: float,
                  op_ids: Collection[str], timeout_s: float = 30.0) -> dict[str, float]:
    """When each of ``op_ids`` was first handed to ``topic`` (its message's timestamp, in
    seconds), reading what was produced from ``since_s`` on up to the end the topic had
    when the read began. Operations without a message there are left out. ``settings``:
    the librdkafka client settings (the cluster's address and options)."""
    from confluent_kafka import Consumer, TopicPartition

    wanted = set(op_ids)
    consumer = Consumer({**settings, "group.id": f"conveyor-bench-{uuid.uuid4().hex}",
                         "enable.auto.commit": False, "enable.partition.eof": False})
    try:
        metadata = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
        if metadata is None or metadata.error is not None:
            return {}
        since_ms = int(since_s * 1000)
        starts = consumer.offsets_for_times(
            [TopicPartition(topic, p, since_ms) for p in sorted(metadata.partitions)],
            timeout=timeout_s)
        ends: dict[int, int] = {}
        assigned = []
        for tp in starts:
            _, high = consumer.get_watermark_offsets(tp, timeout=timeout_s)
            if 0 <= tp.offset < high:  # -1: nothing produced there since since_s
                ends[tp.partition] = high
                assigned.append(tp)
        consumer.assign(assigned)
        found: dict[str, float] = {}
        deadline = time.monotonic() + timeout_s
        while ends and time.monotonic() < deadline:
            messages: list[Any] = consumer.consume(READ_BATCH, 0.5)
            for message in messages:
                if message.error() is not None:
                    continue
                partition = message.partition()
                if message.offset() >= ends.get(partition, -1) - 1:
                    ends.pop(partition, None)
                decoded = decode(message.key(), message.value(), message.headers())
                if decoded is None or decoded.op_id not in wanted:
                    continue
                at_s = message.timestamp()[1] / 1000.0
                if at_s > 0 and at_s < found.get(decoded.op_id, float("inf")):
                    found[decoded.op_id] = at_s
        return found
    finally:
        consumer.close()


def split(operations: Sequence[Mapping[str, Any]], published: Mapping[str, float]
          ) -> dict[str, dict[str, float | int | None]]:
    """The two parts of each started operation's wait that has a message in
    ``published`` (op id -> seconds), summarized in milliseconds. A part below zero
    (the message's whole-millisecond timestamp) counts as zero."""
    to_log: list[float] = []
    to_start: list[float] = []
    for op in operations:
        at_s = published.get(str(op.get("id")))
        if at_s is None or not op.get("started_at") or not op.get("created_at"):
            continue
        to_log.append(max(0.0, at_s - op["created_at"]))
        to_start.append(max(0.0, op["started_at"] - at_s))
    return {"to_log": summarize_ms(to_log), "log_to_start": summarize_ms(to_start)}
