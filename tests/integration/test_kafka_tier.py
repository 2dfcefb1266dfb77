"""The Kafka tier end to end with real processes (``conveyor api``, which runs the relay
by default, and ``conveyor worker``), a real broker and PostgreSQL: lag in ``/v1/stats``
and ``/metrics``, dead letters on ``<topic>.dlq`` and replayable through the API, retries
through the outbox."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.fleet import kafka_env, migrate, query, start_api, start_worker
from tests.support.kafka import bootstrap, unique_prefix
from tests.support.postgres import create_database, drop_database
from tests.support.processes import ConveyorProcess, wait_until

PARTITIONS = 3


@pytest.fixture
def tier(tmp_path: Path) -> Iterator[dict[str, Any]]:
    address = bootstrap()
    url = create_database("conveyor_kafka_tier")
    prefix = unique_prefix("tier")
    # No CONVEYOR_RELAY_IN_PROCESS: the API runs the relay by default.
    env = {"RECORD_LOG": str(tmp_path / "executions.log"), "CONVEYOR_RETRY_BASE_S": "0.2",
           "CONVEYOR_RETRY_CAP_S": "0.5",
           **kafka_env(address, prefix, PARTITIONS)}
    procs: list[ConveyorProcess] = []
    try:
        done = migrate(url, tmp_path)
        assert done.returncode == 0, done.stderr
        api = start_api(url, tmp_path, "api", env)
        procs.append(api)
        yield {"url": url, "api": api, "env": env, "prefix": prefix, "procs": procs,
               "tmp": tmp_path, "bootstrap": address}
    finally:
        for p in procs:
            if p.proc is not None and p.proc.poll() is None:
                p.stop()
        drop_database(url)


def _submit(api: ConveyorProcess, bodies: list[dict[str, Any]]) -> list[str]:
    answer = httpx.post(f"{api.url}/v1/jobs/batch", json={"jobs": bodies}, timeout=30)
    assert answer.status_code == 202, answer.text
    return list(answer.json()["ids"])


def _stats(api: ConveyorProcess) -> dict[str, Any]:
    answer = httpx.get(f"{api.url}/v1/stats", timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


def test_lag_per_partition_in_stats_and_metrics(tier: dict[str, Any]) -> None:
    api, url = tier["api"], tier["url"]
    _submit(api, [{"task": "test.record", "key": f"k{i % 7}", "args": {"n": i, "sleep_s": 0}}
                  for i in range(30)])
    wait_until(lambda: query(url, "SELECT count(*) AS n FROM outbox")[0]["n"] == 0, 30)

    def lagging() -> dict[str, Any] | None:
        transport = _stats(api)["transport"]
        queue = transport["queues"].get("default")
        return transport if queue and queue["lag"] == 30 else None

    transport = wait_until(lagging, 30, 0.3)
    assert transport["kind"] == "kafka"
    assert transport["outbox_backlog"] == {"default": 0}
    parts = transport["queues"]["default"]["partitions"]
    assert sorted(p["partition"] for p in parts) == list(range(PARTITIONS))
    assert all(p["committed"] is None for p in parts), "no worker has consumed yet"

    text = httpx.get(f"{api.url}/metrics", timeout=30).text
    lags = {int(m.group(1)): float(m.group(2)) for m in re.finditer(
        r'^conveyor_consumer_lag\{partition="(\d+)",queue="default"\} (\S+)$', text, re.M)}
    assert sorted(lags) == list(range(PARTITIONS)) and sum(lags.values()) == 30
    assert re.search(r'^conveyor_outbox_backlog\{queue="default"\} 0\.0$', text, re.M)

    shown = subprocess.run([sys.executable, "-m", "conveyor.cli", "stats", "--url", api.url],
                           capture_output=True, text=True, timeout=60,
                           env={**os.environ, "COLUMNS": "250"})
    assert shown.returncode == 0, shown.stderr
    [row] = [line for line in shown.stdout.splitlines() if "default" in line]
    assert "lag" in shown.stdout and row.split("│")[-3].strip() == "30", shown.stdout

    tier["procs"].append(start_worker(url, tier["tmp"], "worker", tier["env"]))
    wait_until(lambda: query(url, "SELECT count(*) AS n FROM operations WHERE status = "
                             "'succeeded'")[0]["n"] == 30, 60)
    wait_until(lambda: _stats(api)["transport"]["queues"]["default"]["lag"] == 0, 30, 0.3)


def _dlq_messages(address: str, topic: str, want: int) -> list[dict[str, Any]]:
    from confluent_kafka import Consumer

    consumer = Consumer({"bootstrap.servers": address, "group.id": f"dlq-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    found: list[dict[str, Any]] = []
    try:
        def enough() -> bool:
            for message in consumer.consume(100, 0.5):
                if message.error() is None:
                    found.append(json.loads(message.value()))
            return len(found) >= want

        wait_until(enough, 60, 0)
    finally:
        consumer.close()
    return found


def test_dead_letters_on_the_dlq_topic_and_replayable(tier: dict[str, Any]) -> None:
    api, url = tier["api"], tier["url"]
    tier["procs"].append(start_worker(url, tier["tmp"], "worker", tier["env"]))
    [job_id, ok_id] = _submit(api, [
        {"task": "sys.fail", "args": {}, "max_attempts": 2},
        {"task": "sys.fail", "args": {"times": 1}, "max_attempts": 3, "key": "k"}])

    def status(jid: str) -> str:
        return str(httpx.get(f"{api.url}/v1/jobs/{jid}", timeout=10).json()["status"])

    wait_until(lambda: status(job_id) == "failed" and status(ok_id) == "succeeded", 60)
    [op] = httpx.get(f"{api.url}/v1/jobs/{job_id}", timeout=10).json()["operations"]
    assert op["attempts"] == 2, "the retry re-entered Kafka through the outbox"
    dead = httpx.get(f"{api.url}/v1/dlq", timeout=10).json()
    assert [o["id"] for o in dead["operations"]] == [op["id"]]

    topic = f"{tier['prefix']}default.dlq"
    [letter] = _dlq_messages(tier["bootstrap"], topic, 1)
    assert letter["op_id"] == op["id"] and letter["kind"] == "dead"
    assert letter["task"] == "sys.fail" and letter["attempts"] == 2
    assert "attempt 2 fails" in letter["error"]["message"]

    replayed = httpx.post(f"{api.url}/v1/dlq/replay", json={"ids": [op["id"]]}, timeout=10)
    assert replayed.status_code == 200 and replayed.json()["count"] == 1
    wait_until(lambda: status(job_id) == "failed", 60)
    again = _dlq_messages(tier["bootstrap"], topic, 2)
    assert [m["op_id"] for m in again] == [op["id"], op["id"]]


def test_relay_process_serves_metrics(tier: dict[str, Any]) -> None:
    """``conveyor relay --metrics-port`` exports the lag and backlog gauges."""
    from tests.support.processes import free_port

    port = free_port()
    relay = ConveyorProcess(["relay", "--store", tier["url"], "--metrics-port", str(port)],
                            tier["tmp"] / "relay.log", env=tier["env"])
    tier["procs"].append(relay.start())
    _submit(tier["api"], [{"task": "math.add", "args": {"a": 1, "b": 2}}])

    def scraped() -> str | None:
        try:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        except httpx.HTTPError:
            return None
        return text if "conveyor_consumer_lag{" in text else None

    text = wait_until(scraped, 60, 0.5)
    assert re.search(r'^conveyor_outbox_backlog\{queue="default"\} 0\.0$', text, re.M)
    assert re.search(r'^conveyor_consumer_lag\{partition="\d",queue="default"\} 1\.0$', text,
                     re.M)


def test_an_attempt_whose_lease_was_lost_does_not_hold_back_its_key(
        tier: dict[str, Any]) -> None:
    """A worker that loses a lease mid-attempt (the lease expired and was rescued) drops
    the attempt and lets go of its message: the operation's new message, in the same
    partition behind it, and the key's next operation both run."""
    api, url = tier["api"], tier["url"]
    env = {**tier["env"], "CONVEYOR_LEASE_S": "3", "CONVEYOR_RESCUE_INTERVAL_S": "60"}
    tier["procs"].append(start_worker(url, tier["tmp"], "worker", env))
    [slow_job] = _submit(api, [{"task": "test.record", "key": "k",
                                "args": {"n": 0, "sleep_s": 4}}])

    def op_of(job_id: str) -> dict[str, Any]:
        [row] = query(url, "SELECT id, status, attempts FROM operations WHERE job_id = %s",
                      (job_id,))
        return row

    wait_until(lambda: op_of(slow_job)["status"] == "running", 60, 0.05)
    # What a rescuer does to an expired lease: the operation waits again (and, through
    # the outbox, gets a new message in the same partition, behind the one being run).
    query(url, "UPDATE operations SET status = 'queued', run_at = now(), worker_id = NULL, "
          "lease_expires_at = NULL WHERE job_id = %s AND status = 'running'", (slow_job,))
    [next_job] = _submit(api, [{"task": "test.record", "key": "k",
                                "args": {"n": 1, "sleep_s": 0}}])
    wait_until(lambda: op_of(slow_job)["status"] == op_of(next_job)["status"] == "succeeded",
               60, 0.2)
    assert op_of(slow_job)["attempts"] == 2, "the lost attempt ended; a new one ran"


def test_partitions_handed_back_after_a_lost_session_are_read_again(
        tier: dict[str, Any]) -> None:
    """A worker frozen past its session loses its partitions and drops the messages it
    had buffered; when the group hands the same partitions back, it reads them again from
    the committed offset, also when it had paused them (its buffer full): none is
    skipped, none stays paused."""
    api, url = tier["api"], tier["url"]
    env = {**tier["env"], "CONVEYOR_KAFKA_SESSION_TIMEOUT_S": "6",  # the broker's minimum
           "CONVEYOR_KAFKA_MAX_BUFFERED": "10"}
    worker = start_worker(url, tier["tmp"], "worker", env, concurrency=1)
    tier["procs"].append(worker)
    n = 60
    _submit(api, [{"task": "test.record", "args": {"n": i, "sleep_s": 0.1}}
                  for i in range(n)])

    def succeeded() -> int:
        return int(query(url, "SELECT count(*) AS n FROM operations "
                         "WHERE status = 'succeeded'")[0]["n"])

    wait_until(lambda: succeeded() >= 5, 60, 0.05)
    assert succeeded() < n - 10, "the rest is buffered in the worker"
    assert worker.proc is not None
    os.killpg(worker.proc.pid, signal.SIGSTOP)  # the group expires its session
    time.sleep(12)
    os.killpg(worker.proc.pid, signal.SIGCONT)
    wait_until(lambda: "(session expired)" in worker.log_path.read_text(), 30, 0.2)
    wait_until(lambda: succeeded() == n, 90, 0.2)
