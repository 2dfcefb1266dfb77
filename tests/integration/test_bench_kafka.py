"""``conveyor bench --tier kafka`` end to end: API, relay and worker on PostgreSQL and a
real broker. With the relay a process of its own (``--relay separate``), a small B1 drain
and B4 run whose figures must be sane (CPU split includes the relay and the broker; B4
says where the pool processes' time went), two worker processes sharing the consumer
group and the pool's two processes. With the relay inside the API (the default), a small
B1 drain: the API's CPU is the relay's too."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from tests.support.kafka import bootstrap, unique_prefix
from tests.support.postgres import create_database, drop_database

N_OPS = 1000
N_CPU_OPS = 100


def run_bench(tmp_path: Path, database: str, partitions: int, *args: str,
              timeout_s: float) -> dict[str, Any]:
    """``conveyor bench --tier kafka`` with ``args`` on a fresh database (dropped after),
    fresh topics of ``partitions``, its servers' logs under ``tmp_path / "work"``; the
    report, once it exited 0."""
    url = create_database(database)
    out = tmp_path / "bench.json"
    cmd = [sys.executable, "-m", "conveyor.cli", "bench", "--tier", "kafka", "--store", url,
           "--kafka-bootstrap", bootstrap(), *args, "--workdir", str(tmp_path / "work"),
           "--out", str(out), "--quiet"]
    env = {**os.environ, "CONVEYOR_KAFKA_TOPIC_PREFIX": unique_prefix("bench"),
           "CONVEYOR_KAFKA_PARTITIONS": str(partitions)}
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s,
                              cwd=tmp_path, env=env)
    finally:
        drop_database(url)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    report: dict[str, Any] = json.loads(out.read_text())
    return report


@pytest.mark.timeout(180)
def test_bench_b1_and_b4_on_the_kafka_tier(tmp_path: Path) -> None:
    report = run_bench(tmp_path, "conveyor_bench_kafka", 4, "--relay", "separate",
                       "--workloads", "b1,b4", "--ops", str(N_OPS),
                       "--cpu-ops", str(N_CPU_OPS), "--cpu-ms", "5", "--processes", "2",
                       "--workers", "2", "--deadline", "90", timeout_s=170)
    assert report["target"]["tier"] == "kafka"
    assert report["target"]["workers"] == 2
    assert report["target"]["relay"] == "separate"
    assert any((tmp_path / "work").glob("*-relay.log")), "the relay ran as its own process"
    logs = sorted(p.name for p in (tmp_path / "work").glob("*-worker-*.log"))
    assert sorted({name.split("-", 1)[1] for name in logs}) == [
        "worker-1.log", "worker-2.log"], logs  # per workload started (b1, b4)
    assert all("serving queues" in (tmp_path / "work" / name).read_text() for name in logs)
    assert "acks=all" in report["target"]["durability"]
    b1 = report["results"]["b1"]
    assert b1["ops"] == N_OPS and b1["outcomes"] == {"succeeded": N_OPS}
    assert b1["ops_per_s"] > 0
    assert b1["cpu"]["worker"]["cpu_s"] > 0
    # The relay publishes while the operations load; in the drain it has nothing to
    # publish and, woken by NOTIFY, may use no CPU at all: it is checked where it works.
    assert "relay" in b1["cpu"] and b1["load"]["cpu"]["relay"]["cpu_s"] > 0
    assert "kafka" in b1["cpu"], "the broker's CPU is a group of its own"
    b4 = report["results"]["b4"]
    assert "error" not in b4, b4
    assert b4["ops"] == N_CPU_OPS and b4["outcomes"] == {"succeeded": N_CPU_OPS}
    pool = b4["pool"]
    assert pool["processes"] == 2, "the pools of both workers are followed"
    assert pool["busy_s"] > 0
    shares = pool["busy_share"] + pool["runqueue_share"] + pool["idle_share"]
    assert shares == pytest.approx(1.0, abs=0.01)


@pytest.mark.timeout(150)
def test_bench_runs_the_relay_inside_the_api_by_default(tmp_path: Path) -> None:
    """Also the log's own ceiling, on the tier's broker: B1 is read against it."""
    report = run_bench(tmp_path, "conveyor_bench_kafka_api_relay", 2, "--workloads", "b1",
                       "--ops", "500", "--processes", "1", "--deadline", "90",
                       "--ceilings", "kafka", timeout_s=140)
    assert report["target"]["relay"] == "api"
    work = tmp_path / "work"
    assert not any(work.glob("*-relay.log")), "no relay process of its own"
    [api_log] = work.glob("*-api.log")
    assert "relay to Kafka" in api_log.read_text()
    b1 = report["results"]["b1"]
    assert b1["ops"] == 500 and b1["outcomes"] == {"succeeded": 500}
    assert "relay" not in b1["cpu"] and b1["load"]["cpu"]["api"]["cpu_s"] > 0

    log = report["ceilings"]["raw"]["kafka"]
    assert "error" not in log, log
    assert log["partitions"] == 2 and log["message_bytes"] > 0
    produced = 0
    for batch in ("1", "16", "500"):
        p = log["produce"][batch]
        assert p["messages"] > 0 and p["messages"] % int(batch) == 0
        assert p["messages_per_s"] > 0 and p["flush_ms"]["p50"] > 0
        assert p["cpu_us_per_message"] > 0
        produced += p["messages"]
    assert log["produce"]["500"]["broker_cpu_us_per_message"] is not None  # the tier's broker
    assert log["consume"]["messages"] == produced, "every message produced is read back"
    one = log["one_message"]
    assert one["messages"] > 0 and one["to_consumer_ms"]["count"] == one["messages"]
    assert one["ack_ms"]["p50"] > 0 and one["to_consumer_ms"]["p50"] > 0
    [versus] = [c for c in report["ceilings"]["comparisons"]
                if c["workload"] == "B1 (Kafka tier)"]
    assert versus["ratio"] == round(b1["ops_per_s"] / log["consume"]["messages_per_s"], 3)
    topics = AdminClient({"bootstrap.servers": bootstrap()}).list_topics(timeout=10).topics
    assert log["topic"] not in topics, "the ceiling deletes its topic"


@pytest.mark.timeout(120)
def test_b3_on_the_kafka_tier_splits_the_wait_at_the_log(tmp_path: Path) -> None:
    """Each sampled operation's message is read back from its topic: its timestamp
    splits the wait into the part before the log and the part after, which add up to
    the whole wait (to within the timestamp's millisecond)."""
    report = run_bench(tmp_path, "conveyor_bench_kafka_b3", 2, "--workloads", "b3",
                       "--rate", "200", "--rate-duration", "2", "--processes", "1",
                       "--deadline", "60", timeout_s=110)
    b3 = report["results"]["b3"]
    assert "error" not in b3, b3
    start = b3["enqueue_to_start_ms"]
    parts = b3["enqueue_to_start_parts_ms"]
    assert start["count"] == b3["sampled_ops"] > 0
    assert parts["to_log"]["count"] == parts["log_to_start"]["count"] == start["count"]
    assert parts["to_log"]["p50"] > 0 and parts["log_to_start"]["p50"] > 0
    whole = parts["to_log"]["mean"] + parts["log_to_start"]["mean"]
    assert start["mean"] <= whole + 0.01 and whole <= start["mean"] + 1.0
