#!/usr/bin/env python3
"""Smoke check of a Kafka broker (the one scripts/kafka.sh starts) with confluent-kafka.

    python3 scripts/kafka/smoke.py 127.0.0.1:PORT [--topic NAME]
    python3 scripts/kafka/smoke.py 127.0.0.1:PORT --topic NAME --verify

Without --verify: creates TOPIC with 3 partitions, produces with an idempotent producer
(acks=all) to every partition, commits one transaction and aborts another, consumes with
a consumer group (read_committed, manual offset store + commit, cooperative-sticky),
checks that a second member of the group resumes from the committed offsets, and
reads the topic once more with the KIP-848 consumer protocol.

With --verify (e.g. after a kill -9 and restart of the broker): checks that everything
the first run wrote is still there (topic, committed and aborted records, the group's
committed offsets) and that a transactional producer with the same transactional.id
works again.

Exits 0 if every check passes, 1 (with the reason on stderr) otherwise.
Needs `pip install confluent-kafka`.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

PARTITIONS = 3
IDEMPOTENT_COUNT = 30  # idem-0..29, i % 3 to partition i % 3
TXN_COUNT = 9  # txn-0..8 in a committed transaction
ABORTED_COUNT = 3  # aborted-0..2 in an aborted transaction (must never be seen)
TIMEOUT = 60.0


class SmokeError(Exception):
    pass


def log(msg: str) -> None:
    print(f"[smoke.py] {msg}", file=sys.stderr, flush=True)


def check(cond: bool, msg: str) -> None:
    if not cond:
        raise SmokeError(msg)


def expected_keys() -> set[str]:
    return {f"idem-{i}" for i in range(IDEMPOTENT_COUNT)} | {f"txn-{i}" for i in range(TXN_COUNT)}


def create_topic(bootstrap: str, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)]
    )
    futures[topic].result(timeout=TIMEOUT)
    describe_topic(bootstrap, topic)
    log(f"created topic {topic} with {PARTITIONS} partitions")


def describe_topic(bootstrap: str, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + TIMEOUT
    while True:
        md = admin.list_topics(topic=topic, timeout=10)
        t = md.topics.get(topic)
        if (
            t is not None
            and t.error is None
            and len(t.partitions) == PARTITIONS
            and all(p.leader >= 0 for p in t.partitions.values())
        ):
            return
        if time.monotonic() > deadline:
            raise SmokeError(
                f"topic {topic} does not have {PARTITIONS} partitions with leaders: {t}"
            )
        time.sleep(0.2)


def produce_idempotent(bootstrap: str, topic: str) -> None:
    producer = Producer(
        {"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True, "linger.ms": 5}
    )
    errors: list[str] = []
    delivered: list[int] = []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(str(err))
        else:
            delivered.append(msg.partition())

    for i in range(IDEMPOTENT_COUNT):
        producer.produce(
            topic,
            key=f"idem-{i}",
            value=f"value-{i}",
            partition=i % PARTITIONS,
            on_delivery=on_delivery,
        )
    remaining = producer.flush(TIMEOUT)
    check(remaining == 0, f"{remaining} idempotent messages not delivered")
    check(not errors, f"delivery errors: {errors}")
    check(len(delivered) == IDEMPOTENT_COUNT, f"only {len(delivered)} delivery reports")
    check(set(delivered) == set(range(PARTITIONS)), f"not all partitions written: {set(delivered)}")
    log(f"idempotent producer (acks=all): {IDEMPOTENT_COUNT} messages to {PARTITIONS} partitions")


def transactional_producer(bootstrap: str, txn_id: str) -> Producer:
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "transactional.id": txn_id,
        }
    )
    producer.init_transactions(TIMEOUT)
    return producer


def produce_transactions(bootstrap: str, topic: str, txn_id: str) -> None:
    producer = transactional_producer(bootstrap, txn_id)
    producer.begin_transaction()
    for i in range(TXN_COUNT):
        producer.produce(topic, key=f"txn-{i}", value=f"txn-value-{i}", partition=i % PARTITIONS)
    producer.commit_transaction(TIMEOUT)
    producer.begin_transaction()
    for i in range(ABORTED_COUNT):
        producer.produce(
            topic, key=f"aborted-{i}", value="must not be read", partition=i % PARTITIONS
        )
    producer.flush(TIMEOUT)
    producer.abort_transaction(TIMEOUT)
    log(f"transactional producer: committed {TXN_COUNT}, aborted {ABORTED_COUNT}")


def consumer_config(bootstrap: str, group: str, **extra) -> dict:
    conf = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "isolation.level": "read_committed",
        "partition.assignment.strategy": "cooperative-sticky",
    }
    conf.update(extra)
    return conf


def consume(consumer: Consumer, topic: str, want: int, idle: float = 0.0) -> list:
    """Poll until `want` messages arrived (then `idle` more seconds to catch extras)."""
    consumer.subscribe([topic])
    messages = []
    deadline = time.monotonic() + TIMEOUT
    extra_until = None
    while time.monotonic() < deadline:
        if len(messages) >= want:
            if extra_until is None:
                extra_until = time.monotonic() + idle
            if time.monotonic() >= extra_until:
                break
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            raise SmokeError(f"consumer error: {msg.error()}")
        messages.append(msg)
    return messages


def keys_of(messages) -> list[str]:
    return [m.key().decode() for m in messages]


def consume_group(bootstrap: str, topic: str, group: str) -> None:
    consumer = Consumer(consumer_config(bootstrap, group))
    try:
        messages = consume(consumer, topic, len(expected_keys()), idle=1.0)
        keys = keys_of(messages)
        check(not [k for k in keys if k.startswith("aborted-")], f"read aborted records: {keys}")
        check(
            sorted(keys) == sorted(expected_keys()),
            f"group read {len(keys)} keys, want {len(expected_keys())}",
        )
        # At-least-once style: store offsets only after "processing", then commit.
        for m in messages:
            consumer.store_offsets(m)
        consumer.commit(asynchronous=False)
        committed = consumer.committed(
            [TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10
        )
        check(all(tp.offset > 0 for tp in committed), f"offsets not committed: {committed}")
        log(
            f"consumer group {group}: read {len(keys)} committed records, "
            "none aborted; committed offsets"
        )
    finally:
        consumer.close()

    # A new member of the same group resumes at the committed offsets: it sees only
    # a message produced after the commit.
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True})
    producer.produce(topic, key="late-0", value="after commit", partition=0)
    check(producer.flush(TIMEOUT) == 0, "late message not delivered")
    consumer = Consumer(consumer_config(bootstrap, group))
    try:
        keys = keys_of(consume(consumer, topic, 1, idle=2.0))
        check(keys == ["late-0"], f"second group member read {keys}, want only ['late-0']")
        log(f"consumer group {group}: a new member resumed from the committed offsets")
    finally:
        consumer.close()


def consume_new_protocol(bootstrap: str, topic: str) -> None:
    # KIP-848 (group.protocol=consumer): the broker-side assignor, Kafka 4's default for
    # the Java client. partition.assignment.strategy is not allowed with it.
    conf = consumer_config(bootstrap, f"{topic}-kip848", **{"group.protocol": "consumer"})
    del conf["partition.assignment.strategy"]
    consumer = Consumer(conf)
    try:
        want = len(expected_keys()) + 1
        keys = keys_of(consume(consumer, topic, want))
        check(len(keys) == want, f"KIP-848 consumer read {len(keys)} records, want {want}")
        log(f"KIP-848 consumer (group.protocol=consumer) read all {want} records")
    finally:
        consumer.close()


def verify(bootstrap: str, topic: str, group: str, txn_id: str) -> None:
    describe_topic(bootstrap, topic)
    # The group's committed offsets survived: read them back and compare to the ends.
    consumer = Consumer(consumer_config(bootstrap, group))
    try:
        committed = consumer.committed(
            [TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=TIMEOUT
        )
        check(all(tp.offset > 0 for tp in committed), f"committed offsets lost: {committed}")
        log(
            "consumer group offsets survived: "
            + ", ".join(f"p{tp.partition}={tp.offset}" for tp in committed)
        )
    finally:
        consumer.close()
    # Every committed record is still readable (from the start, with a fresh group).
    consumer = Consumer(consumer_config(bootstrap, f"{group}-verify-{uuid.uuid4().hex[:8]}"))
    try:
        want = expected_keys() | {"late-0"}
        keys = keys_of(consume(consumer, topic, len(want), idle=1.0))
        # Earlier --verify runs each committed one "after-restart-*" record; ignore those.
        keys = [k for k in keys if not k.startswith("after-restart-")]
        check(not [k for k in keys if k.startswith("aborted-")], f"read aborted records: {keys}")
        check(
            sorted(keys) == sorted(want), f"after restart read {sorted(keys)}, want {sorted(want)}"
        )
        log(f"all {len(want)} earlier records are still readable")
    finally:
        consumer.close()
    # Transactions still work with the same transactional.id (the coordinator recovers it).
    producer = transactional_producer(bootstrap, txn_id)
    producer.begin_transaction()
    producer.produce(topic, key=f"after-restart-{uuid.uuid4().hex[:8]}", value="x", partition=1)
    producer.commit_transaction(TIMEOUT)
    log("transactional producer with the same transactional.id committed again")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("bootstrap", help="bootstrap address, e.g. 127.0.0.1:9092")
    parser.add_argument("--topic", help="topic name (default: a new random one)")
    parser.add_argument(
        "--verify", action="store_true", help="only verify what an earlier run wrote"
    )
    args = parser.parse_args()
    topic = args.topic or f"conveyor-smoke-{uuid.uuid4().hex[:8]}"
    group = f"{topic}-group"
    txn_id = f"{topic}-txn"
    started = time.monotonic()
    try:
        if args.verify:
            check(args.topic is not None, "--verify needs --topic")
            verify(args.bootstrap, topic, group, txn_id)
        else:
            create_topic(args.bootstrap, topic)
            produce_idempotent(args.bootstrap, topic)
            produce_transactions(args.bootstrap, topic, txn_id)
            consume_group(args.bootstrap, topic, group)
            consume_new_protocol(args.bootstrap, topic)
    except (SmokeError, KafkaException) as exc:
        log(f"FAILED: {exc}")
        return 1
    except Exception as exc:
        log(f"FAILED: {type(exc).__name__}: {exc}")
        return 1
    log(f"OK ({time.monotonic() - started:.1f}s, topic {topic})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
