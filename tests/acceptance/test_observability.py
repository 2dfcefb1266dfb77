"""Observability of separate API and worker processes on one store: metrics that add up
and pass promtool, worker probes, and a killed worker dropping out of the registry."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.support.processes import ConveyorProcess, free_port, wait_until

TERMINAL_OUTCOMES = ("succeeded", "dead", "cancelled")


def start_api(tmp: Path, db: Path, env: dict[str, str]) -> ConveyorProcess:
    port = free_port()
    subprocess.run(["conveyor", "migrate", "--store", f"sqlite:///{db}"], check=True,
                   capture_output=True)
    api = ConveyorProcess(["api", "--port", str(port), "--store", f"sqlite:///{db}"],
                          tmp / "api.log", env=env, port=port)
    api.start().wait_ready()
    return api


def start_worker(tmp: Path, db: Path, env: dict[str, str], name: str) -> ConveyorProcess:
    port = free_port()
    worker = ConveyorProcess(["worker", "--store", f"sqlite:///{db}", "--metrics-port",
                              str(port), "--processes", "1"], tmp / f"{name}.log", env=env,
                             port=port)
    worker.start().wait_ready()
    return worker


def metric_sum(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def promtool_check(text: str) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is missing: scripts/test.sh installs Debian's prometheus package")
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_metrics_add_up_across_processes_and_pass_promtool(tmp_path: Path) -> None:
    db = tmp_path / "obs.db"
    env = {"CONVEYOR_RETRY_BASE_S": "0.05"}
    api = start_api(tmp_path, db, env)
    worker = start_worker(tmp_path, db, env, "worker")
    try:
        jobs = ([{"task": "sys.noop"}] * 300 + [{"task": "sys.fail", "max_attempts": 2}] * 5
                + [{"task": "sys.sleep", "args": {"seconds": 30}}] * 3)
        assert httpx.post(f"{api.url}/v1/jobs/batch", json={"jobs": jobs}).status_code == 202

        def settled() -> dict | None:
            counts = httpx.get(f"{api.url}/v1/stats").json()["queues"][0]["counts"]
            return counts if counts["succeeded"] == 300 and counts["dead"] == 5 else None

        counts = wait_until(settled, 60)
        api_text = httpx.get(f"{api.url}/metrics").text
        worker_text = httpx.get(f"{worker.url}/metrics").text
        promtool_check(api_text)
        promtool_check(worker_text)

        submitted = metric_sum(api_text, "conveyor_operations_submitted_total")
        finished = sum(metric_sum(worker_text, "conveyor_operations_finished_total",
                                  outcome=o) for o in TERMINAL_OUTCOMES)
        still_open = sum(counts[s] for s in ("scheduled", "queued", "running", "retrying"))
        assert submitted == len(jobs)
        assert finished + still_open == submitted, (finished, still_open, submitted)
        assert metric_sum(worker_text, "conveyor_operations_finished_total",
                          outcome="retry") == 5
        assert metric_sum(api_text, "conveyor_queue_operations", state="succeeded") == 300
        assert metric_sum(worker_text, "conveyor_operations_in_flight") == 3
        assert re.search(r"conveyor_operation_duration_seconds_count\{[^}]*\} ", worker_text)
        assert not re.search(r'[0-9a-f]{32}', api_text + worker_text), "no ids in labels"
        assert httpx.get(f"{worker.url}/health/live").json() == {"status": "ok"}
        assert httpx.get(f"{worker.url}/health/ready").status_code == 200
    finally:
        worker.stop()
        api.stop()


def test_killed_worker_leaves_the_registry(tmp_path: Path) -> None:
    db = tmp_path / "registry.db"
    env = {"CONVEYOR_WORKER_TIMEOUT_S": "3", "CONVEYOR_LEASE_S": "3"}
    api = start_api(tmp_path, db, env)
    first = start_worker(tmp_path, db, env, "first")
    second = start_worker(tmp_path, db, env, "second")
    try:
        def live() -> list[dict]:
            return httpx.get(f"{api.url}/v1/workers").json()["workers"]

        wait_until(lambda: len(live()) == 2, 20)
        assert {w["pid"] for w in live()} == {first.proc.pid, second.proc.pid}
        assert not any(w["drift"] for w in live())
        first.kill9()
        wait_until(lambda: [w["pid"] for w in live()] == [second.proc.pid], 20)
        gone = httpx.get(f"{api.url}/v1/workers", params={"include_gone": True}).json()
        assert {w["status"] for w in gone["workers"]} == {"live", "gone"}
    finally:
        second.stop()
        api.stop()
