"""The PostgreSQL tier as users run it: 2 ``conveyor api`` and 3 ``conveyor worker``
processes on one database, 20,000 keyed operations, one worker ``kill -9``-ed mid-run."""

from __future__ import annotations

import collections
import itertools
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.support.fleet import migrate, query, start_api, start_worker, wait_workers
from tests.support.postgres import create_database, drop_database
from tests.support.processes import ConveyorProcess, wait_until

pytestmark = pytest.mark.slow

OPS = 20_000
KEYS = 200
BATCH = 1_000
LEASE_S = 3.0
RESCUE_INTERVAL_S = 0.5
TASK_S = 0.02


def _submit(api: ConveyorProcess, keys: list[int], acknowledged: list[str],
            errors: list[str]) -> None:
    """Send this API's share in batches, one after the other: for every key, submission
    order is the order of ``n`` (each key is submitted through one API only)."""
    per_key = OPS // KEYS
    bodies = [{"task": "test.record", "key": f"k{k}", "args": {"n": n, "sleep_s": TASK_S}}
              for n in range(per_key) for k in keys]
    with httpx.Client(base_url=api.url, timeout=60) as client:
        for i in range(0, len(bodies), BATCH):
            answer = client.post("/v1/jobs/batch", json={"jobs": bodies[i:i + BATCH]})
            if answer.status_code != 202:
                errors.append(f"{answer.status_code} {answer.text[:300]}")
                return
            acknowledged.extend(answer.json()["ids"])


def test_fleet_of_two_apis_and_three_workers_survives_a_killed_worker(tmp_path: Path) -> None:
    url = create_database("conveyor_fleet")
    record_log = tmp_path / "executions.log"
    env = {"RECORD_LOG": str(record_log), "CONVEYOR_LEASE_S": str(LEASE_S),
           "CONVEYOR_RESCUE_INTERVAL_S": str(RESCUE_INTERVAL_S)}
    procs: list[ConveyorProcess] = []
    try:
        done = migrate(url, tmp_path)
        assert done.returncode == 0, done.stderr
        apis = [start_api(url, tmp_path, f"api-{i}", env) for i in range(2)]
        workers = [start_worker(url, tmp_path, f"worker-{i}", env) for i in range(3)]
        procs += apis + workers
        wait_workers(apis[0], {w.proc.pid for w in workers if w.proc})

        started = time.monotonic()
        acked: list[list[str]] = [[], []]
        errors: list[str] = []
        shares = [list(range(0, KEYS, 2)), list(range(1, KEYS, 2))]
        threads = [threading.Thread(target=_submit, args=(api, share, ack, errors))
                   for api, share, ack in zip(apis, shares, acked, strict=True)]
        for t in threads:
            t.start()

        # Kill one worker once it is busy, while submissions may still be arriving.
        victim = workers[1]
        assert victim.proc is not None
        victim_id = next(w["id"] for w in wait_workers(apis[0], {victim.proc.pid})
                         if w["pid"] == victim.proc.pid)
        wait_until(lambda: query(url, "SELECT count(*) AS n FROM operations WHERE status = "
                                 "'running' AND worker_id = %s", (victim_id,))[0]["n"] >= 20
                   and query(url, "SELECT count(*) AS n FROM operations WHERE status = "
                             "'succeeded'")[0]["n"] > OPS // 10, 60, 0.05)
        victim.kill9()
        killed_at = time.monotonic()
        held = {r["id"] for r in query(url, "SELECT id FROM operations WHERE status = 'running'"
                                       " AND worker_id = %s", (victim_id,))}
        replacement = start_worker(url, tmp_path, "worker-3", env)
        procs.append(replacement)

        def rescued() -> bool:
            return not query(url, "SELECT 1 FROM operations WHERE status = 'running' AND "
                             "worker_id = %s LIMIT 1", (victim_id,))

        wait_until(rescued, 30, 0.05)
        rescue_s = time.monotonic() - killed_at
        for t in threads:
            t.join(120)
        assert errors == []
        acknowledged = acked[0] + acked[1]
        assert len(acknowledged) == OPS

        def finished() -> bool:
            [row] = query(url, "SELECT count(*) FILTER (WHERE status IN ('succeeded', 'dead', "
                          "'cancelled')) AS done FROM operations")
            return int(row["done"]) >= OPS

        wait_until(finished, 120, 0.2)
        elapsed_s = time.monotonic() - started

        ops = query(url, "SELECT o.id, o.job_id, o.key, o.args, o.status, o.attempts, "
                    "o.result, o.started_at, o.finished_at, o.seq, j.status AS job_status "
                    "FROM operations o JOIN jobs j ON j.id = o.job_id ORDER BY o.seq")
    finally:
        for p in procs:
            if p.proc is not None and p.proc.poll() is None:
                p.stop()
        drop_database(url)

    # Every acknowledged job, and nothing else, exists and succeeded.
    assert sorted(r["job_id"] for r in ops) == sorted(acknowledged)
    assert all(r["status"] == "succeeded" and r["job_status"] == "succeeded" for r in ops)
    assert all(r["result"] == r["args"]["n"] for r in ops)
    # At-least-once execution, exactly one recorded outcome: an operation ran more than
    # once only when an earlier attempt's lease was lost (the killed worker's).
    executions = collections.Counter(line.split()[0] for line in
                                     record_log.read_text().splitlines() if line)
    assert set(executions) == {r["id"] for r in ops}
    assert all(executions[r["id"]] <= r["attempts"] for r in ops)
    rerun = {r["id"] for r in ops if r["attempts"] > 1}
    assert rerun <= held, "only operations the killed worker held ran again"
    # Per-key order: each key's operations ran one at a time in submission order.
    by_key = collections.defaultdict(list)
    for r in ops:
        by_key[r["key"]].append(r)
    assert len(by_key) == KEYS
    for key, rows in by_key.items():
        assert [r["args"]["n"] for r in rows] == list(range(OPS // KEYS)), key
        for earlier, later in itertools.pairwise(rows):
            assert earlier["finished_at"] <= later["started_at"], (key, earlier["id"])
    # The killed worker's operations were rescued within its lease (plus the rescuer's
    # interval and some scheduling slack).
    assert held, "the kill should have interrupted some operations"
    assert rescue_s <= LEASE_S + RESCUE_INTERVAL_S + 2.0, rescue_s
    print(f"\nfleet: {OPS} operations in {elapsed_s:.1f} s ({OPS / elapsed_s:.0f} ops/s), "
          f"{len(held)} held by the killed worker, rescued {rescue_s:.2f} s after the kill, "
          f"{len(rerun)} ran twice")
