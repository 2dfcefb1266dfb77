"""What a Conveyor message on Kafka looks like (shared by the relay and the consumers).

* Topic ``<prefix><queue>`` (one per queue); dead letters go to ``<topic>.dlq``.
* Key: the operation's ordering key (UTF-8), so every operation of a key lands on one
  partition (the Java-compatible murmur2 partitioner); unkeyed operations have no key and
  are spread over the partitions.
* Value: JSON ``{"op_id", "queue", "kind"}`` plus, for dead letters, the operation
  (``job_id``, ``task``, ``args``, ``attempts``, ``error``).
* Headers: the operation's trace context (``traceparent``, ``tracestate``, ...).

The message only points at the operation: PostgreSQL stays the source of truth, so a
stale or duplicated message is recognised there and skipped.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from ...store.base import OutboxEntry

_INVALID = re.compile(r"[^a-zA-Z0-9._-]")


def topic_name(prefix: str, queue: str) -> str:
    """The queue's topic (characters Kafka refuses become ``_``)."""
    return _INVALID.sub("_", prefix + queue)[:249]


def dlq_topic_name(prefix: str, queue: str) -> str:
    return topic_name(prefix, queue)[:245] + ".dlq"


def group_id(prefix: str, queue: str) -> str:
    """All workers of a queue form this one consumer group."""
    return topic_name(prefix, queue)


def encode(entry: OutboxEntry) -> tuple[bytes | None, bytes, list[tuple[str, bytes]]]:
    """``(key, value, headers)`` of the message for an outbox entry."""
    body: dict[str, Any] = {"op_id": entry.op_id, "queue": entry.queue, "kind": entry.kind}
    if entry.kind == "dead":
        body.update(entry.payload)
    key = entry.key.encode() if entry.key is not None else None
    headers = [(k, str(v).encode()) for k, v in sorted(entry.headers.items())]
    return key, json.dumps(body, separators=(",", ":")).encode(), headers


@dataclass(frozen=True, slots=True)
class Decoded:
    op_id: str
    key: str | None
    headers: dict[str, str]


def decode(key: bytes | None, value: bytes | None,
           headers: list[tuple[str, bytes | None]] | None) -> Decoded | None:
    """The operation a message points at, or ``None`` for a message that is not ours."""
    try:
        body = json.loads(value or b"")
        op_id = str(body["op_id"])
    except (ValueError, KeyError, TypeError):
        return None
    carried = {k: v.decode("utf-8", "replace") for k, v in headers or [] if v is not None}
    return Decoded(op_id, key.decode("utf-8", "replace") if key is not None else None, carried)
