"""The ``conveyor`` CLI as a user runs it, against a real ``conveyor serve``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import free_port, serve


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    proc = serve(tmp_path_factory.mktemp("cli"), env={"CONVEYOR_RETRY_BASE_S": "0.05"})
    yield proc
    assert proc.stop() == 0, "SIGTERM must stop serve cleanly"


def cli(*args: str, url: str | None = None) -> subprocess.CompletedProcess[str]:
    extra = ["--url", url] if url else []
    return subprocess.run([sys.executable, "-m", "conveyor.cli", *args, *extra],
                          capture_output=True, text=True, timeout=120)


def test_submit_wait_and_list(server) -> None:
    done = cli("submit", "math.add", "--args", '{"a": 2, "b": 3}', "--wait", "--json",
               url=server.url)
    assert done.returncode == 0, done.stderr
    [job] = json.loads(done.stdout)
    assert job["status"] == "succeeded" and job["operations"][0]["result"] == 5
    listed = cli("jobs", "list", "--json", url=server.url)
    assert job["id"] in [j["id"] for j in json.loads(listed.stdout)]
    shown = cli("jobs", "show", job["id"], url=server.url)
    assert shown.returncode == 0 and "succeeded" in shown.stdout


def test_count_uses_batches_and_waits(server) -> None:
    done = cli("submit", "sys.noop", "--count", "1500", "--wait", "--json", url=server.url)
    assert done.returncode == 0, done.stderr
    jobs = json.loads(done.stdout)
    assert len(jobs) == 1500 and {j["status"] for j in jobs} == {"succeeded"}


def test_dead_letter_show_and_replay(server) -> None:
    failed = cli("submit", "sys.fail", "--args", "{}", "--wait", "--json", url=server.url)
    assert failed.returncode == 1, "a failed job makes --wait exit non-zero"
    op = json.loads(failed.stdout)[0]["operations"][0]
    assert op["status"] == "dead"
    listed = json.loads(cli("dlq", "list", "--json", url=server.url).stdout)
    assert op["id"] in [d["id"] for d in listed]
    shown = cli("dlq", "show", op["id"], url=server.url)
    assert "RuntimeError" in shown.stdout and "Traceback" in shown.stdout
    replayed = cli("dlq", "replay", op["id"], "--json", url=server.url)
    assert json.loads(replayed.stdout)["replayed"] == [op["id"]]
    assert cli("dlq", "replay", url=server.url).returncode == 2


def test_tasks_stats_workers(server) -> None:
    tasks = json.loads(cli("tasks", "--json", url=server.url).stdout)
    assert {"math.add", "sys.sleep", "sys.fail"} <= {t["name"] for t in tasks}
    stats = json.loads(cli("stats", "--json", url=server.url).stdout)["queues"]
    assert stats[0]["queue"] == "default"
    workers = json.loads(cli("workers", "--json", url=server.url).stdout)
    assert workers and workers[0]["status"] == "live"


def test_clear_errors_without_tracebacks(server) -> None:
    bad_json = cli("submit", "math.add", "--args", "{oops", url=server.url)
    assert bad_json.returncode == 2 and "not valid JSON" in bad_json.stderr
    unknown = cli("submit", "no.such", url=server.url)
    assert unknown.returncode == 1 and "unknown task" in unknown.stderr
    missing = cli("jobs", "show", "0" * 32, url=server.url)
    assert missing.returncode == 1 and "no job" in missing.stderr
    down = cli("stats", url=f"http://127.0.0.1:{free_port()}")
    assert down.returncode == 1 and "cannot reach Conveyor" in down.stderr
    bad_store = cli("migrate", "--store", "nosuch://x")
    assert bad_store.returncode == 1 and "unknown store URL" in bad_store.stderr
    bad_ahead = cli("worker", "--claim-ahead", "-1")
    assert bad_ahead.returncode == 2 and "claim_ahead must be 0 or more" in bad_ahead.stderr
    for result in (bad_json, unknown, missing, down, bad_store, bad_ahead):
        assert "Traceback" not in result.stderr + result.stdout


def test_sigterm_releases_in_flight_work(tmp_path: Path) -> None:
    """Graceful shutdown: stop claiming, wait the grace period, release the rest without
    counting their attempt, so a restarted worker runs them at once."""
    env = {"CONVEYOR_SHUTDOWN_GRACE_S": "0.5"}
    first = serve(tmp_path, env=env, name="first")
    submitted = cli("submit", "sys.sleep", "--args", '{"seconds": 60}', "--count", "3",
                    "--json", url=first.url)
    ids = json.loads(submitted.stdout)

    def all_running() -> bool:
        jobs = [json.loads(cli("jobs", "show", i, "--json", url=first.url).stdout) for i in ids]
        return all(j["status"] == "running" for j in jobs)

    from tests.support.processes import wait_until

    wait_until(all_running, 30)
    assert first.stop(timeout_s=20) == 0
    second = serve(tmp_path, env=env, name="second")
    try:
        jobs = [json.loads(cli("jobs", "show", i, "--json", url=second.url).stdout) for i in ids]
        # Released leases did not count as attempts: each runs again as attempt 1.
        assert all(j["operations"][0]["attempts"] <= 1 for j in jobs), jobs
        assert all(j["operations"][0]["status"] in ("queued", "running") for j in jobs)
    finally:
        second.stop()
