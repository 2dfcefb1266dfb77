"""PostgreSQL stops mid-run and comes back: the API refuses politely (503 with
``Retry-After``, never a 500), ``/health/ready`` says why, processes stay up, workers
reconnect by themselves and every acknowledged job finishes."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.support.fleet import migrate, query, start_api, start_worker, wait_workers
from tests.support.postgres import admin_url, create_database, drop_database
from tests.support.processes import REPO, ConveyorProcess, wait_until

pytestmark = pytest.mark.slow
SCRIPT = REPO / "scripts" / "postgres.sh"


def _script(command: str) -> str:
    done = subprocess.run([str(SCRIPT), command], capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0 or command == "url", done.stderr
    return done.stdout.strip()


def _controllable() -> None:
    """This test stops and restarts the server: it must be the one scripts/postgres.sh runs
    (same ``CONVEYOR_SERVICES_DIR``)."""
    ours = _script("url")
    if not ours or urlsplit(ours).port != urlsplit(admin_url()).port:
        message = "CONVEYOR_TEST_POSTGRES_URL is not the server scripts/postgres.sh controls"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def _submit(api: ConveyorProcess, first: int, count: int, keyed: bool) -> list[str]:
    jobs = [{"task": "test.record", "args": {"n": n, "sleep_s": 0.02}}
            | ({"key": f"k{n % 20}"} if keyed else {})
            for n in range(first, first + count)]
    answer = httpx.post(f"{api.url}/v1/jobs/batch", json={"jobs": jobs}, timeout=30)
    assert answer.status_code == 202, answer.text
    return list(answer.json()["ids"])


@pytest.mark.parametrize("keyed", [True, False], ids=["keyed", "keyless"])
def test_postgres_restart_mid_run(tmp_path: Path, keyed: bool) -> None:
    """Keyless work takes the one-statement claim, outcome and submission paths."""
    _controllable()
    url = create_database("conveyor_resilience")
    env = {"RECORD_LOG": str(tmp_path / "executions.log"), "CONVEYOR_LEASE_S": "3",
           "CONVEYOR_RESCUE_INTERVAL_S": "0.5"}
    procs: list[ConveyorProcess] = []
    try:
        assert migrate(url, tmp_path).returncode == 0
        api = start_api(url, tmp_path, "api", env)
        worker = start_worker(url, tmp_path, "worker", env, concurrency=20)
        procs += [api, worker]
        assert worker.proc is not None
        wait_workers(api, {worker.proc.pid})
        acknowledged = _submit(api, 0, 600, keyed)
        wait_until(lambda: query(url, "SELECT count(*) AS n FROM operations "
                                 "WHERE status = 'succeeded'")[0]["n"] >= 50, 60, 0.05)

        _script("down")
        down_at = time.monotonic()
        seen: list[int] = []
        try:
            def refused() -> bool:
                submit = httpx.post(f"{api.url}/v1/jobs", timeout=30,
                                    json={"task": "test.record", "args": {"n": -1}})
                ready = httpx.get(f"{api.url}/health/ready", timeout=30)
                seen.extend([submit.status_code, ready.status_code])
                if submit.status_code == 503:
                    assert submit.headers["content-type"].startswith("application/problem+json")
                    assert int(submit.headers["retry-after"]) >= 1
                if ready.status_code == 503:
                    assert "unavailable" in ready.json()["detail"]
                return submit.status_code == 503 and ready.status_code == 503

            wait_until(refused, 30, 0.1)
            stats = httpx.get(f"{api.url}/v1/stats", timeout=30)
            seen.append(stats.status_code)
            assert stats.status_code == 503
            while time.monotonic() - down_at < 6.0:  # longer than a lease
                time.sleep(0.5)
            assert api.proc is not None and api.proc.poll() is None
            assert worker.proc.poll() is None, "the worker must outlive the outage"
        finally:
            _script("start")
        assert 500 not in seen and all(code in (202, 200, 503) for code in seen), seen

        wait_until(lambda: httpx.get(f"{api.url}/health/ready", timeout=30).status_code == 200,
                   30)
        acknowledged += _submit(api, 600, 100, keyed)

        def finished() -> bool:
            [row] = query(url, "SELECT count(*) FILTER (WHERE status = 'succeeded') AS ok, "
                          "count(*) AS n FROM operations WHERE job_id = ANY(%s)",
                          (acknowledged,))
            return bool(row["ok"] == len(acknowledged))

        wait_until(finished, 90, 0.2)
        assert worker.proc.poll() is None and api.proc.poll() is None
        rows = query(url, "SELECT job_id, result, args FROM operations WHERE job_id = ANY(%s)",
                     (acknowledged,))
        assert sorted(r["job_id"] for r in rows) == sorted(acknowledged)
        assert all(r["result"] == r["args"]["n"] for r in rows)
    finally:
        _script("start")
        for p in procs:
            if p.proc is not None and p.proc.poll() is None:
                p.stop()
        drop_database(url)
