"""``conveyor bench --tier kafka`` end to end: API, relay and worker on PostgreSQL and a
real broker; a small B1 drain whose figures must be sane (CPU split includes the relay)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.kafka import bootstrap, unique_prefix
from tests.support.postgres import create_database, drop_database

N_OPS = 1000


@pytest.mark.timeout(180)
def test_bench_b1_on_the_kafka_tier(tmp_path: Path) -> None:
    address = bootstrap()
    url = create_database("conveyor_bench_kafka")
    out = tmp_path / "bench.json"
    cmd = [sys.executable, "-m", "conveyor.cli", "bench", "--tier", "kafka", "--store", url,
           "--kafka-bootstrap", address, "--workloads", "b1", "--ops", str(N_OPS),
           "--processes", "1", "--deadline", "90", "--workdir", str(tmp_path / "work"),
           "--out", str(out), "--quiet"]
    env = {**os.environ, "CONVEYOR_KAFKA_TOPIC_PREFIX": unique_prefix("bench"),
           "CONVEYOR_KAFKA_PARTITIONS": "4"}
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=170, cwd=tmp_path,
                              env=env)
    finally:
        drop_database(url)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    report = json.loads(out.read_text())
    assert report["target"]["tier"] == "kafka"
    assert "acks=all" in report["target"]["durability"]
    b1 = report["results"]["b1"]
    assert b1["ops"] == N_OPS and b1["outcomes"] == {"succeeded": N_OPS}
    assert b1["ops_per_s"] > 0
    # The relay is measured like the others; during the drain it has nothing to publish
    # (rows went out during the load) and, woken by NOTIFY instead of polling, may use no
    # CPU at all.
    assert b1["cpu"]["relay"]["cpu_s"] >= 0 and b1["cpu"]["worker"]["cpu_s"] > 0
