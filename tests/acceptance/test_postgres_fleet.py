"""The PostgreSQL tier as users run it: 2 ``conveyor api`` and 3 ``conveyor worker``
processes on one database, 20,000 keyed operations, one worker ``kill -9``-ed mid-run."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.support.fleet import (
    OPS_SQL,
    check_outcomes,
    kill_busy_worker,
    migrate,
    query,
    start_api,
    start_worker,
    stop_all,
    submit_keyed,
    wait_finished,
    wait_workers,
)
from tests.support.postgres import create_database, drop_database
from tests.support.processes import ConveyorProcess

pytestmark = pytest.mark.slow

OPS = 20_000
KEYS = 200
BATCH = 1_000
LEASE_S = 3.0
RESCUE_INTERVAL_S = 0.5
TASK_S = 0.02


@pytest.mark.parametrize("keyed", [True, False], ids=["keyed", "keyless"])
def test_fleet_of_two_apis_and_three_workers_survives_a_killed_worker(
        tmp_path: Path, keyed: bool) -> None:
    """Keyed work is claimed with the key lock; keyless work in one statement per claim
    and per outcome batch (each its own transaction): both survive the kill alike."""
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
        # Each key is submitted through one API only: its submission order is that of n.
        shares = [list(range(0, KEYS, 2)), list(range(1, KEYS, 2))]
        threads = [threading.Thread(target=submit_keyed, args=(
                       api, share, OPS // KEYS, BATCH, TASK_S, ack, errors, keyed))
                   for api, share, ack in zip(apis, shares, acked, strict=True)]
        for t in threads:
            t.start()

        # Kill one worker once it is busy, while submissions may still be arriving.
        killed = kill_busy_worker(url, apis[0], workers[1], min_running=20,
                                  min_succeeded=OPS // 10, timeout_s=60)
        held = killed.held
        procs.append(start_worker(url, tmp_path, "worker-3", env))
        rescue_s = killed.wait_rescued(url, 30)
        for t in threads:
            t.join(120)
        assert errors == []
        acknowledged = acked[0] + acked[1]
        assert len(acknowledged) == OPS

        wait_finished(url, OPS, 120)
        elapsed_s = time.monotonic() - started
        ops = query(url, OPS_SQL)
        # The running totals behind /v1/stats count each outcome once, kill or not.
        stats = httpx.get(f"{apis[1].url}/v1/stats", timeout=10).json()["queues"]
    finally:
        stop_all(procs)
        drop_database(url)

    # Every acknowledged job, and nothing else, succeeded; per-key order held;
    # at-least-once execution, exactly one recorded outcome.
    check_outcomes(ops, acknowledged, record_log, OPS // KEYS)
    assert len({r["key"] for r in ops}) == (KEYS if keyed else 1)
    assert [(q["queue"], q["counts"]) for q in stats] == [
        ("default", {"scheduled": 0, "queued": 0, "running": 0, "retrying": 0,
                     "succeeded": OPS, "dead": 0, "cancelled": 0})]
    # An operation ran more than once only when an earlier attempt's lease was lost
    # (the killed worker's).
    rerun = {r["id"] for r in ops if r["attempts"] > 1}
    assert rerun <= held, "only operations the killed worker held ran again"
    # The killed worker's operations were rescued within its lease (plus the rescuer's
    # interval and some scheduling slack).
    assert held, "the kill should have interrupted some operations"
    assert rescue_s <= LEASE_S + RESCUE_INTERVAL_S + 2.0, rescue_s
    print(f"\nfleet: {OPS} operations in {elapsed_s:.1f} s ({OPS / elapsed_s:.0f} ops/s), "
          f"{len(held)} held by the killed worker, rescued {rescue_s:.2f} s after the kill, "
          f"{len(rerun)} ran twice")
