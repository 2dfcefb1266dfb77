"""The embedded tier as a new user meets it: one ``conveyor serve``, real HTTP, real SQLite.

Each test starts the real CLI in a subprocess and checks a guarantee end to end.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import os
import time
from pathlib import Path

import httpx
import pytest

from tests.support.processes import serve, wait_until

FAST_RETRIES = {"CONVEYOR_RETRY_BASE_S": "0.05", "CONVEYOR_RETRY_CAP_S": "0.2"}
TERMINAL = {"succeeded", "failed", "cancelled"}


def wait_job(url: str, job_id: str, timeout_s: float = 60.0) -> dict:
    def done() -> dict | None:
        job = httpx.get(f"{url}/v1/jobs/{job_id}").json()
        return job if job["status"] in TERMINAL else None

    return wait_until(done, timeout_s)


@pytest.fixture
def server(tmp_path: Path):
    proc = serve(tmp_path, env=FAST_RETRIES)
    yield proc
    proc.stop()


def test_mixed_job_exact_results_and_permanent_error(server) -> None:
    body = {"operations": [
        {"task": "math.add", "args": {"a": 2, "b": 3}},
        {"task": "math.div", "args": {"a": 1, "b": 0}},
        {"task": "math.fibonacci", "args": {"n": 90}},
    ]}
    created = httpx.post(f"{server.url}/v1/jobs", json=body)
    assert created.status_code == 202
    assert created.headers["location"].endswith(created.json()["id"])
    job = wait_job(server.url, created.json()["id"])
    add, div, fib = job["operations"]
    assert job["status"] == "failed"
    assert add["status"] == "succeeded" and add["result"] == 5
    assert fib["status"] == "succeeded" and fib["result"] == 2880067194370816120
    assert div["status"] == "dead"
    assert div["error"]["type"] == "ZeroDivisionError"
    assert div["attempts"] == 1, "a permanent error must not be retried"


def test_fail_then_succeed_dead_letter_and_replay(server) -> None:
    ok = httpx.post(f"{server.url}/v1/jobs", json={"task": "sys.fail", "args": {"times": 2}})
    job = wait_job(server.url, ok.json()["id"])
    assert job["status"] == "succeeded"
    assert job["operations"][0]["attempts"] == 3
    assert job["operations"][0]["result"] == 3

    bad = httpx.post(f"{server.url}/v1/jobs", json={"task": "sys.fail", "args": {}})
    job = wait_job(server.url, bad.json()["id"])
    op = job["operations"][0]
    assert job["status"] == "failed" and op["status"] == "dead" and op["attempts"] == 3
    dlq = httpx.get(f"{server.url}/v1/dlq").json()["operations"]
    assert op["id"] in [d["id"] for d in dlq]

    replayed = httpx.post(f"{server.url}/v1/dlq/replay", json={"ids": [op["id"]]})
    assert replayed.status_code == 200 and replayed.json()["count"] == 1

    def ran_again() -> dict | None:
        again = httpx.get(f"{server.url}/v1/jobs/{job['id']}").json()
        o = again["operations"][0]
        return again if o["status"] == "dead" and o["finished_at"] > op["finished_at"] else None

    again = wait_until(ran_again, 30)
    assert again["operations"][0]["attempts"] == 3


def test_idempotency_one_job_under_concurrency_and_conflict(server) -> None:
    body = {"task": "math.add", "args": {"a": 1, "b": 1}}
    headers = {"Idempotency-Key": "order-42"}
    first = httpx.post(f"{server.url}/v1/jobs", json=body, headers=headers)
    second = httpx.post(f"{server.url}/v1/jobs", json=body, headers=headers)
    assert first.status_code in (200, 202) and second.status_code in (200, 202)
    assert first.json()["id"] == second.json()["id"]

    async def burst() -> set[str]:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            answers = await asyncio.gather(*(
                client.post("/v1/jobs", json=body, headers={"Idempotency-Key": "burst"})
                for _ in range(50)
            ))
        assert all(a.status_code in (200, 202) for a in answers)
        return {a.json()["id"] for a in answers}

    assert len(asyncio.run(burst())) == 1
    conflict = httpx.post(f"{server.url}/v1/jobs", json={**body, "args": {"a": 2, "b": 2}},
                          headers=headers)
    assert conflict.status_code == 409
    assert conflict.headers["content-type"].startswith("application/problem+json")


def test_per_key_order_with_parallel_keys(server) -> None:
    jobs = [
        {"task": "sys.sleep", "args": {"seconds": 0.02}, "key": f"k{k}"}
        for _ in range(20) for k in range(10)
    ]
    answer = httpx.post(f"{server.url}/v1/jobs/batch", json={"jobs": jobs}, timeout=30)
    assert answer.status_code == 202
    ids = answer.json()["ids"]
    ops = []
    for job_id in ids:
        ops.append(wait_job(server.url, job_id)["operations"][0])
    by_key: dict[str, list[dict]] = collections.defaultdict(list)
    for op in ops:  # ``ops`` is in submission order
        assert op["status"] == "succeeded"
        by_key[op["key"]].append(op)
    for key, key_ops in by_key.items():
        for earlier, later in itertools.pairwise(key_ops):
            assert later["started_at"] >= earlier["finished_at"], f"key {key} overlapped"
    spans = sorted((op["started_at"], op["finished_at"], op["key"]) for op in ops)
    overlapping = any(
        a[2] != b[2] and b[0] < a[1] for a, b in itertools.pairwise(spans)
    )
    assert overlapping, "different keys should run in parallel"


def test_bad_input_gets_problem_json(server) -> None:
    cases = [
        httpx.post(f"{server.url}/v1/jobs", content=b"{not json",
                   headers={"content-type": "application/json"}),
        httpx.post(f"{server.url}/v1/jobs", json={"task": "no.such.task", "args": {}}),
        httpx.post(f"{server.url}/v1/jobs", json={"task": "math.add", "args": {"a": "x", "b": 1}}),
        httpx.post(f"{server.url}/v1/jobs", content=b"[" * 10_000 + b"]" * 10_000,
                   headers={"content-type": "application/json"}),
        httpx.post(f"{server.url}/v1/jobs", content=b" " * (1024 * 1024 + 1),
                   headers={"content-type": "application/json"}),
        httpx.get(f"{server.url}/v1/jobs/0123456789abcdef0123456789abcdef"),
    ]
    statuses = [r.status_code for r in cases]
    assert statuses[0] == 400
    assert statuses[1] == 422 and "no.such.task" in cases[1].json()["detail"]
    assert statuses[2] == 422 and "args.a" in cases[2].json()["detail"]
    assert 400 <= statuses[3] < 500
    assert statuses[4] == 413
    assert statuses[5] == 404
    for r in cases:
        assert r.headers["content-type"].startswith("application/problem+json"), r.text
        assert "Traceback" not in r.text
    assert httpx.get(f"{server.url}/health/ready").status_code == 200


def _children_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by the direct children of ``pid``."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:  # fields[1] is the parent pid
            total += int(fields[11]) + int(fields[12])
    return total / tick


def test_cpu_work_uses_every_core(server) -> None:
    """10 ms CPU operations keep every core busy: the pool processes together use about
    ``cores`` CPU-seconds per wall second while the batch runs."""
    cores = os.cpu_count() or 1
    if cores < 2:
        pytest.fail("this check needs at least 2 cores")
    body = {"operations": [{"task": "sys.cpu", "args": {"ms": 10}} for _ in range(300)]}
    before_cpu_s = _children_cpu_s(server.proc.pid)
    started = time.monotonic()
    job_id = httpx.post(f"{server.url}/v1/jobs", json=body).json()["id"]
    ops = wait_job(server.url, job_id)["operations"]
    wall_s = time.monotonic() - started
    used_cpu_s = _children_cpu_s(server.proc.pid) - before_cpu_s
    assert all(op["status"] == "succeeded" for op in ops)
    assert used_cpu_s >= 300 * 0.010 * 0.9, used_cpu_s
    # More than one core's worth of CPU per wall second: the pool really runs in parallel
    # (about 1.8 on an idle 2-core machine; the margin absorbs polling and other load).
    assert used_cpu_s / wall_s > 1.15, f"pool used {used_cpu_s:.2f} CPU-s in {wall_s:.2f} s"
