"""Backpressure on a real API process: a queue above its critical depth refuses
submissions with 503 and Retry-After; low-priority ones are refused above the warning
level (429); once a worker drains the backlog, submissions are accepted again and every
job accepted before was run (nothing dropped)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from tests.support.processes import ConveyorProcess, free_port, wait_until

ENV = {"CONVEYOR_BACKPRESSURE_QUEUES": "bp=20:50,lowq=5:1000",
       "CONVEYOR_BACKPRESSURE_REFRESH_S": "0.2", "CONVEYOR_RATE_LIMIT_PER_S": "0"}


def submit(url: str, queue: str, priority: int = 0) -> httpx.Response:
    return httpx.post(f"{url}/v1/jobs", json={
        "queue": queue, "operations": [{"task": "sys.noop", "priority": priority}]})


def metric(url: str, line_start: str) -> float:
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_critical_depth_refuses_then_drains_and_accepts_again(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'conveyor.db'}"
    migrate = subprocess.run([sys.executable, "-m", "conveyor.cli", "migrate", "--store", store],
                             capture_output=True, text=True, timeout=60, check=False)
    assert migrate.returncode == 0, migrate.stderr
    port = free_port()
    api = ConveyorProcess(["api", "--port", str(port), "--store", store], tmp_path / "api.log",
                          env=ENV, port=port).start()
    api.wait_ready()
    worker: ConveyorProcess | None = None
    try:
        backlog = httpx.post(f"{api.url}/v1/jobs/batch", json={
            "jobs": [{"queue": "bp", "task": "sys.noop"}] * 60})
        assert backlog.status_code == 202, backlog.text
        accepted = backlog.json()["ids"]

        refused = wait_until(lambda: (r := submit(api.url, "bp")).status_code == 503 and r, 10)
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert "overloaded" in refused.json()["detail"]
        batch = httpx.post(f"{api.url}/v1/jobs/batch", json={"jobs": [{"queue": "bp",
                                                                        "task": "sys.noop"}]})
        assert batch.status_code == 503, "batches too"
        assert submit(api.url, "default").status_code == 202, "other queues are not affected"
        assert metric(api.url, 'conveyor_backpressure_rejections_total{level="critical",'
                               'queue="bp"}') >= 2

        # warning level: only low-priority work is refused, with 429
        lows = httpx.post(f"{api.url}/v1/jobs/batch", json={
            "jobs": [{"queue": "lowq", "task": "sys.noop"}] * 6})
        assert lows.status_code == 202
        low = wait_until(lambda: (r := submit(api.url, "lowq", -1)).status_code == 429 and r, 10)
        assert int(low.headers["retry-after"]) >= 1
        assert submit(api.url, "lowq", 0).status_code == 202, "normal priority still accepted"

        # a worker drains the backlog; submissions are accepted again
        worker = ConveyorProcess(["worker", "--store", store, "--queues", "bp",
                                  "--processes", "1"], tmp_path / "worker.log").start()
        wait_until(lambda: submit(api.url, "bp").status_code == 202, 60, 0.2)
        for job_id in accepted:
            wait_until(lambda job_id=job_id: httpx.get(
                f"{api.url}/v1/jobs/{job_id}").json()["status"] == "succeeded", 60)
    finally:
        if worker is not None:
            worker.stop()
        api.stop()
