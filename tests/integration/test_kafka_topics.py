"""Topics on a real broker: created with the configured partitions, refused with a clear
one-line error when they exist with fewer."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conveyor.errors import TransportError
from conveyor.transport.kafka import Topics
from tests.support.kafka import bootstrap, unique_prefix
from tests.support.postgres import create_database, drop_database


def test_created_with_partitions_and_refused_when_fewer() -> None:
    address = bootstrap()
    prefix = unique_prefix("topics")
    Topics(address, 2, prefix).ensure(["orders"])
    counts = Topics(address, 2, prefix).partition_counts(
        [f"{prefix}orders", f"{prefix}orders.dlq"])
    assert counts == {f"{prefix}orders": 2, f"{prefix}orders.dlq": 2}
    Topics(address, 1, prefix).ensure(["orders"])  # more than configured is fine
    with pytest.raises(TransportError, match="has 2 partitions, fewer than the 4"):
        Topics(address, 4, prefix).ensure(["orders"])


def test_worker_refuses_a_topic_with_fewer_partitions(tmp_path: object) -> None:
    address = bootstrap()
    prefix = unique_prefix("topics")
    Topics(address, 2, prefix).ensure(["default"])
    url = create_database("conveyor_kafka_topics")
    try:
        assert subprocess.run([sys.executable, "-m", "conveyor.cli", "migrate", "--store", url],
                              capture_output=True, timeout=60).returncode == 0
        done = subprocess.run(
            [sys.executable, "-m", "conveyor.cli", "worker", "--store", url, "--transport",
             "kafka", "--kafka-bootstrap", address, "--kafka-topic-prefix", prefix,
             "--kafka-partitions", "6", "--queues", "default"],
            capture_output=True, text=True, timeout=120)
    finally:
        drop_database(url)
    assert done.returncode != 0
    assert "fewer than the 6 configured" in done.stderr
    assert "Traceback" not in done.stderr
