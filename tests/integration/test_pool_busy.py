"""A worker keeps every pool process busy when enough work is ready, on the PostgreSQL
tier and on the Kafka tier (real ``conveyor api`` and ``conveyor worker`` processes).

``test.hold`` sleeps on the pool and logs its pid and wall-clock interval, so the test
counts executions that overlapped one on the other pool process. Operations delivered one
at a time, a consumer that dispatches one message per claim, or a worker that takes no
more until a whole batch is done would leave one process waiting: overlaps then go
missing. The count does not depend on how fast the machine is (the task sleeps; a busy
machine stretches nothing)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.fleet import kafka_env, migrate, query, start_api, stop_all
from tests.support.kafka import bootstrap, unique_prefix
from tests.support.postgres import create_database, drop_database
from tests.support.processes import ConveyorProcess, wait_until

PROCESSES = 2
OPS = 12
"""Six rounds of two: each pool process runs about six, back to back."""
HOLD_S = 0.4


@pytest.fixture(params=["postgres", "kafka"])
def fleet(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    url = create_database("conveyor_pool_busy")
    record_log = tmp_path / "executions.log"
    env = {"RECORD_LOG": str(record_log)}
    if request.param == "kafka":
        env |= kafka_env(bootstrap(), unique_prefix("busy"), partitions=4)  # API relays
    procs: list[ConveyorProcess] = []
    try:
        done = migrate(url, tmp_path)
        assert done.returncode == 0, done.stderr
        procs.append(start_api(url, tmp_path, "api", env))
        yield {"url": url, "env": env, "procs": procs, "tmp": tmp_path, "log": record_log}
    finally:
        stop_all(procs)
        drop_database(url)


def _executions(log: Path) -> list[tuple[int, float, float, int]]:
    rows = []
    for line in log.read_text().splitlines():
        pid, start, end, n = line.split()
        rows.append((int(pid), float(start), float(end), int(n)))
    return rows


def _overlapping_another_process(rows: list[tuple[int, float, float, int]]) -> set[int]:
    """The ``n`` of every execution that overlapped one on another pool process."""
    found = set()
    for a, b in itertools.combinations(rows, 2):
        if a[0] != b[0] and a[1] < b[2] and b[1] < a[2]:
            found.update((a[3], b[3]))
    return found


@pytest.mark.timeout(120)
def test_a_worker_keeps_every_pool_process_busy(fleet: dict[str, Any]) -> None:
    url, api = fleet["url"], fleet["procs"][0]
    answer = httpx.post(f"{api.url}/v1/jobs/batch", timeout=30, json={"jobs": [
        {"task": "test.hold", "args": {"n": n, "hold_s": HOLD_S}} for n in range(OPS)]})
    assert answer.status_code == 202, answer.text
    worker = ConveyorProcess(
        ["worker", "--store", url, "--tasks", "conveyor_test_tasks", "--processes",
         str(PROCESSES), "--concurrency", "8"], fleet["tmp"] / "worker.log", env=fleet["env"])
    fleet["procs"].append(worker.start())
    wait_until(lambda: query(url, "SELECT count(*) AS n FROM operations WHERE status = "
                             "'succeeded'")[0]["n"] == OPS, 90, 0.1)

    rows = _executions(fleet["log"])
    assert sorted(r[3] for r in rows) == list(range(OPS)), "each ran once"
    assert len({r[0] for r in rows}) == PROCESSES, "both pool processes ran operations"
    overlapped = _overlapping_another_process(rows)
    # Every execution overlaps one on the other process, but for at most one at the very
    # end (the last one may run alone while the other process has nothing left).
    assert len(overlapped) >= OPS - 1, sorted(rows, key=lambda r: r[1])
