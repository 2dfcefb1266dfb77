"""The Kafka tier as users run it: ``conveyor api``, ``conveyor relay`` and 3
``conveyor worker`` processes in one consumer group on a real broker, 12 partitions,
200 keys, 50,000 operations; one worker ``kill -9``-ed mid-run."""

from __future__ import annotations

import collections
import itertools
import os
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.fleet import (
    kafka_env,
    migrate,
    query,
    start_api,
    start_relay,
    start_worker,
    wait_workers,
)
from tests.support.kafka import bootstrap, unique_prefix
from tests.support.postgres import create_database, drop_database
from tests.support.processes import ConveyorProcess, wait_until

pytestmark = pytest.mark.slow

OPS = int(os.environ.get("CONVEYOR_TEST_KAFKA_FLEET_OPS", "50000"))
KEYS = 200
PARTITIONS = 12
BATCH = 1_000
LEASE_S = 3.0
TASK_S = 0.002


def _submit(api: ConveyorProcess, acknowledged: list[str], errors: list[str]) -> None:
    per_key = OPS // KEYS
    bodies = [{"task": "test.record", "key": f"k{k}", "args": {"n": n, "sleep_s": TASK_S}}
              for n in range(per_key) for k in range(KEYS)]
    with httpx.Client(base_url=api.url, timeout=120) as client:
        for i in range(0, len(bodies), BATCH):
            answer = client.post("/v1/jobs/batch", json={"jobs": bodies[i:i + BATCH]})
            if answer.status_code != 202:
                errors.append(f"{answer.status_code} {answer.text[:300]}")
                return
            acknowledged.extend(answer.json()["ids"])


def check_outcomes(ops: list[dict[str, object]], acknowledged: list[str], record_log: Path,
                   per_key: int) -> collections.Counter[str]:
    """Every acknowledged job succeeded once, results match, per-key order held; returns
    how often each operation ran."""
    assert sorted(str(r["job_id"]) for r in ops) == sorted(acknowledged)
    assert all(r["status"] == "succeeded" and r["job_status"] == "succeeded" for r in ops)
    assert all(r["result"] == r["args"]["n"] for r in ops)  # type: ignore[index]
    executions = collections.Counter(line.split()[0] for line in
                                     record_log.read_text().splitlines() if line)
    assert set(executions) == {r["id"] for r in ops}
    assert all(executions[str(r["id"])] <= int(r["attempts"]) for r in ops)  # type: ignore[call-overload]
    by_key: dict[object, list[dict[str, object]]] = collections.defaultdict(list)
    for r in ops:
        by_key[r["key"]].append(r)
    for key, rows in by_key.items():
        assert [r["args"]["n"] for r in rows] == list(range(per_key)), key  # type: ignore[index]
        for earlier, later in itertools.pairwise(rows):
            assert earlier["finished_at"] <= later["started_at"], (key, earlier["id"])  # type: ignore[operator]
    return executions


def _final_lags(address: str, prefix: str) -> list[Any]:
    import asyncio

    from conveyor.transport.kafka import KafkaLag

    lag = KafkaLag(address, prefix, cache_s=0)
    try:
        def settled() -> list[Any] | None:
            found = asyncio.run(lag.measure(["default"]))
            return found if found and all(p.lag == 0 for p in found) else None

        try:
            return wait_until(settled, 30, 0.5)  # type: ignore[no-any-return]
        except TimeoutError:
            return asyncio.run(lag.measure(["default"]))
    finally:
        lag.close()


OPS_SQL = ("SELECT o.id, o.job_id, o.key, o.args, o.status, o.attempts, o.result, "
           "o.started_at, o.finished_at, o.seq, j.status AS job_status "
           "FROM operations o JOIN jobs j ON j.id = o.job_id ORDER BY o.seq")


@pytest.mark.timeout(1200)
def test_kafka_fleet_survives_a_killed_worker(tmp_path: Path) -> None:
    address = bootstrap()
    url = create_database("conveyor_kafka_fleet")
    record_log = tmp_path / "executions.log"
    prefix = unique_prefix("fleet")
    # Reconciliation off: nothing may be recovered by re-dispatching lost messages.
    env = {"RECORD_LOG": str(record_log), "CONVEYOR_LEASE_S": str(LEASE_S),
           "CONVEYOR_RESCUE_INTERVAL_S": "0.5", "CONVEYOR_RECONCILE_AFTER_S": "0",
           **kafka_env(address, prefix, PARTITIONS)}
    procs: list[ConveyorProcess] = []
    try:
        done = migrate(url, tmp_path)
        assert done.returncode == 0, done.stderr
        api = start_api(url, tmp_path, "api", env)
        procs.append(api)
        procs.append(start_relay(url, tmp_path, "relay", env))
        workers = [start_worker(url, tmp_path, f"worker-{i}", env) for i in range(3)]
        procs += workers
        wait_workers(api, {w.proc.pid for w in workers if w.proc})

        started = time.monotonic()
        acknowledged: list[str] = []
        errors: list[str] = []
        submitter = threading.Thread(target=_submit, args=(api, acknowledged, errors))
        submitter.start()

        victim = workers[1]
        assert victim.proc is not None
        victim_id = next(w["id"] for w in wait_workers(api, {victim.proc.pid})
                         if w["pid"] == victim.proc.pid)
        wait_until(lambda: query(url, "SELECT count(*) AS n FROM operations WHERE status = "
                                 "'running' AND worker_id = %s", (victim_id,))[0]["n"] >= 5
                   and query(url, "SELECT count(*) AS n FROM operations WHERE status = "
                             "'succeeded'")[0]["n"] > OPS // 10, 300, 0.05)
        victim.kill9()
        killed_at = time.monotonic()
        held = {r["id"] for r in query(url, "SELECT id FROM operations WHERE status = 'running'"
                                       " AND worker_id = %s", (victim_id,))}
        wait_until(lambda: not query(url, "SELECT 1 FROM operations WHERE status = 'running' "
                                     "AND worker_id = %s LIMIT 1", (victim_id,)), 60, 0.05)
        rescue_s = time.monotonic() - killed_at
        submitter.join(600)
        assert errors == []
        assert len(acknowledged) == OPS

        def finished() -> bool:
            [row] = query(url, "SELECT count(*) FILTER (WHERE status IN ('succeeded', 'dead', "
                          "'cancelled')) AS done FROM operations")
            return int(row["done"]) >= OPS

        wait_until(finished, 900, 0.5)
        elapsed_s = time.monotonic() - started
        ops = query(url, OPS_SQL)
        parked = query(url, "SELECT count(*) AS n FROM outbox")[0]["n"]
        lags = _final_lags(address, prefix)
    finally:
        for p in procs:
            if p.proc is not None and p.proc.poll() is None:
                p.stop()
        drop_database(url)

    executions = check_outcomes(ops, acknowledged, record_log, OPS // KEYS)
    rerun = {str(r["id"]) for r in ops if int(r["attempts"]) > 1}
    assert rerun <= held, "only operations the killed worker held ran again"
    assert held, "the kill should have interrupted some operations"
    assert parked == 0, "the outbox drained"
    # Every partition, the killed worker's too, was consumed and committed to its end.
    assert sorted(p.partition for p in lags) == list(range(PARTITIONS))
    assert all(p.lag == 0 and p.committed == p.end_offset for p in lags), lags
    twice = sum(1 for n in executions.values() if n > 1)
    print(f"\nkafka fleet: {OPS} operations in {elapsed_s:.1f} s ({OPS / elapsed_s:.0f} ops/s), "
          f"{len(held)} held by the killed worker, rescued {rescue_s:.2f} s after the kill, "
          f"{twice} ran twice")
