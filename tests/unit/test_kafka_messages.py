"""The Kafka message format: ids, keys and trace context survive the round trip."""

from __future__ import annotations

import json

from conveyor.store.base import OutboxEntry
from conveyor.transport.kafka.messages import decode, dlq_topic_name, encode, topic_name

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_dispatch_message_round_trip_carries_trace_context() -> None:
    entry = OutboxEntry(1, "op1", "default", "k1", "dispatch",
                        headers={"traceparent": TRACEPARENT})
    key, value, headers = encode(entry)
    assert key == b"k1"
    assert headers == [("traceparent", TRACEPARENT.encode())]
    decoded = decode(key, value, headers)
    assert decoded is not None
    assert (decoded.op_id, decoded.key, decoded.headers) == (
        "op1", "k1", {"traceparent": TRACEPARENT})


def test_unkeyed_and_dead_letter_messages() -> None:
    key, value, _ = encode(OutboxEntry(2, "op2", "q", None, "dead",
                                       payload={"task": "t", "error": {"type": "E"}}))
    assert key is None
    body = json.loads(value)
    assert body == {"op_id": "op2", "queue": "q", "kind": "dead", "task": "t",
                    "error": {"type": "E"}}


def test_foreign_messages_are_ignored() -> None:
    assert decode(None, b"not json", None) is None
    assert decode(None, b'{"other": 1}', None) is None
    assert decode(None, None, None) is None


def test_topic_names_are_valid_kafka_names() -> None:
    assert topic_name("conveyor.", "emails") == "conveyor.emails"
    assert topic_name("conveyor.", "a/b c") == "conveyor.a_b_c"
    assert dlq_topic_name("conveyor.", "emails") == "conveyor.emails.dlq"
