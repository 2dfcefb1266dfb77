"""``kill -9`` of ``conveyor serve`` mid-run, then a restart: nothing acknowledged is lost,
no outcome is recorded twice; with operations claimed ahead too (their leases expire with
the killed worker, and each runs once after the restart)."""

from __future__ import annotations

import collections
from pathlib import Path

import httpx
import pytest

from conveyor.config import load_config
from tests.support.processes import serve, wait_until

OPS = 500


def _kill_and_restart(tmp_path: Path, args: tuple[str, ...], ops_n: int,
                      sleep_s: float) -> tuple[list[dict], collections.Counter[str], list[dict]]:
    """Submit ``ops_n`` recording operations to ``serve``, ``kill -9`` it once a quarter
    has succeeded, restart it on the same file and wait for all; returns the operations
    as stored, how many times each ran, and those with more than one attempt. Checks
    what holds at any concurrency: every acknowledged job succeeded, each operation ran
    at least once, no outcome twice."""
    record_log = tmp_path / "executions.log"
    env = {"RECORD_LOG": str(record_log), "CONVEYOR_LEASE_S": "2",
           "CONVEYOR_RESCUE_INTERVAL_S": "0.5"}
    first = serve(tmp_path, *args, env=env, name="first")
    jobs = [{"task": "test.record", "args": {"n": i, "sleep_s": sleep_s}}
            for i in range(ops_n)]
    answer = httpx.post(f"{first.url}/v1/jobs/batch", json={"jobs": jobs}, timeout=30)
    assert answer.status_code == 202
    acknowledged = answer.json()["ids"]
    assert len(acknowledged) == ops_n

    def some_done() -> bool:
        counts = httpx.get(f"{first.url}/v1/stats").json()["queues"][0]["counts"]
        return counts["succeeded"] >= ops_n // 4

    wait_until(some_done, 60)
    first.kill9()

    second = serve(tmp_path, *args, env=env, name="second")
    try:
        def all_done() -> list[dict] | None:
            counts = httpx.get(f"{second.url}/v1/stats").json()["queues"][0]["counts"]
            return counts if counts["succeeded"] + counts["dead"] >= ops_n else None

        wait_until(all_done, 120)
        ops = []
        for job_id in acknowledged:
            job = httpx.get(f"{second.url}/v1/jobs/{job_id}").json()
            assert job["status"] == "succeeded", job
            ops.extend(job["operations"])
    finally:
        second.stop()

    executions = collections.Counter(line.split()[0] for line in record_log.read_text().split("\n")
                                     if line)
    assert {op["id"] for op in ops} == set(executions), "every operation ran at least once"
    assert sorted(op["result"] for op in ops) == list(range(ops_n))
    for op in ops:
        # An operation ran more than once only if its first attempt was cut by the kill;
        # it still has exactly one recorded outcome, from its last lease.
        assert executions[op["id"]] <= op["attempts"], op
    rerun = [op for op in ops if op["attempts"] > 1]
    assert rerun, "the kill should have interrupted some operations"
    return ops, executions, rerun


@pytest.mark.parametrize("claim_ahead", [0, 50])
def test_kill9_mid_run_loses_nothing_and_records_once(tmp_path: Path, claim_ahead: int) -> None:
    args = ("--tasks", "conveyor_test_tasks", "--concurrency", "25",
            "--claim-ahead", str(claim_ahead))
    ops, executions, rerun = _kill_and_restart(tmp_path, args, OPS, 0.1)
    ran_twice = [op for op in ops if executions[op["id"]] > 1]
    assert len(ran_twice) <= 25 + 5, "only operations running at the kill may run again"
    # Leases held at the kill: running ones, and those claimed ahead (never started).
    assert len(rerun) <= 25 + claim_ahead + 5


def test_kill9_at_the_default_concurrency(tmp_path: Path) -> None:
    """The same at the default concurrency (no flag), so with full claim batches: at
    most the leases the worker documents holding on SQLite (3 x concurrency: one batch
    running, two of finished attempts awaiting their record) may run again."""
    concurrency = load_config({}, environ={}).concurrency
    ops, executions, rerun = _kill_and_restart(tmp_path, ("--tasks", "conveyor_test_tasks"),
                                        4 * concurrency, 0.5)
    ran_twice = [op for op in ops if executions[op["id"]] > 1]
    assert len(rerun) <= 3 * concurrency
    assert len(ran_twice) <= 3 * concurrency
