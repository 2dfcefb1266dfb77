"""The HTTP API over real loopback HTTP, on a real SQLite store, with an in-process worker.

One server per module (uvicorn in a background thread of this process); every test reads
and writes through HTTP only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conveyor.client import ApiError, AsyncClient, Client
from conveyor.config import load_config
from conveyor.server import run
from tests.support.processes import free_port, wait_until

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    db = Path(tmp_path_factory.mktemp("api")) / "api.db"
    port = free_port()
    config = load_config({"store": f"sqlite:///{db}", "port": port, "retry_base_s": 0.05,
                          "retry_cap_s": 0.1, "processes": 1}, environ={})
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def main() -> None:
        task = asyncio.create_task(
            run(config, api=True, worker=True, migrate=True, handle_signals=False))
        await stop.wait()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: _ready(base), 30)
    yield base
    loop.call_soon_threadsafe(stop.set)
    thread.join(timeout=30)
    loop.close()


def _ready(base: str) -> bool:
    try:
        return httpx.get(f"{base}/health/ready", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def assert_problem(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == status and body["title"] and body["detail"]
    assert "Traceback" not in response.text
    return body


def test_submit_get_and_operations(url: str) -> None:
    with Client(url) as client:
        job = client.submit("math.mul", {"a": 6, "b": 7}, metadata={"who": "test"})
        assert job["status"] in ("queued", "running", "succeeded")
        done = client.wait(job["id"], timeout_s=30)
    assert done["operations"][0]["result"] == 42 and done["metadata"] == {"who": "test"}
    op = done["operations"][0]
    ops = httpx.get(f"{url}/v1/jobs/{job['id']}/operations").json()["operations"]
    assert [o["id"] for o in ops] == [op["id"]]
    one = httpx.get(f"{url}/v1/jobs/{job['id']}/operations/{op['id']}").json()
    assert one["result"] == 42 and one["attempts"] == 1
    assert_problem(httpx.get(f"{url}/v1/jobs/{job['id']}/operations/nope"), 404)


def test_list_filters_and_cursor_pagination(url: str) -> None:
    with Client(url) as client:
        ids = client.submit_batch([{"task": "sys.noop", "queue": "paging"}] * 7)
    seen: list[str] = []
    cursor = None
    while True:
        params = {"queue": "paging", "limit": 3, **({"cursor": cursor} if cursor else {})}
        page = httpx.get(f"{url}/v1/jobs", params=params).json()
        seen += [j["id"] for j in page["jobs"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(ids) and len(seen) == len(set(seen))
    assert seen == sorted(seen, reverse=True), "newest first"
    by_task = httpx.get(f"{url}/v1/jobs", params={"task": "sys.noop", "queue": "paging"})
    assert len(by_task.json()["jobs"]) == 7
    assert_problem(httpx.get(f"{url}/v1/jobs", params={"status": "bogus"}), 422)
    assert_problem(httpx.get(f"{url}/v1/jobs", params={"limit": 0}), 422)


def test_cancel_waiting_and_running(url: str) -> None:
    with Client(url) as client:
        later = client.submit("sys.noop", {}, delay_s=60)
        running = client.submit("sys.sleep", {"seconds": 30})
        wait_until(lambda: client.get(running["id"])["status"] == "running", 10)
        assert client.cancel(later["id"])["status"] == "cancelled"
        client.cancel(running["id"])
        job = client.wait(running["id"], timeout_s=20)
    assert job["status"] == "cancelled"
    assert job["operations"][0]["status"] == "cancelled"
    assert_problem(httpx.post(f"{url}/v1/jobs/0123/cancel"), 404)


def test_timeout_kills_the_attempt_and_retries(url: str) -> None:
    with Client(url) as client:
        job = client.submit("sys.cpu", {"ms": 5000}, timeout_s=0.3, max_attempts=2)
        done = client.wait(job["id"], timeout_s=30)
    op = done["operations"][0]
    assert op["status"] == "dead" and op["attempts"] == 2
    assert op["error"]["type"] == "TaskTimeout"


def test_dlq_filters_and_replay_rules(url: str) -> None:
    with Client(url) as client:
        job = client.submit("sys.fail", {}, max_attempts=1)
        client.wait(job["id"])
        assert client.dlq(queue="no-such-queue")["operations"] == []
        dead = client.dlq(job_id=job["id"])["operations"]
        assert [d["job_id"] for d in dead] == [job["id"]]
        assert dead[0]["error"]["traceback"]
        with pytest.raises(ApiError) as empty:
            client.replay()
        assert empty.value.status == 422
        answer = client.replay(job_id=job["id"])
        assert answer["count"] == 1
        again = client.wait(job["id"], timeout_s=30)
    assert again["operations"][0]["status"] == "dead"
    assert_problem(httpx.post(f"{url}/v1/dlq/replay", json={"ids": "x"}), 422)


def test_tasks_stats_workers_health_metrics(url: str) -> None:
    tasks = {t["name"]: t for t in httpx.get(f"{url}/v1/tasks").json()["tasks"]}
    assert tasks["math.add"]["kind"] == "process" and tasks["sys.sleep"]["kind"] == "async"
    assert tasks["math.fibonacci"]["schema"]["required"] == ["n"]
    stats = httpx.get(f"{url}/v1/stats").json()["queues"]
    assert all(set(q["counts"]) >= {"queued", "running", "succeeded", "dead"} for q in stats)
    workers = httpx.get(f"{url}/v1/workers").json()["workers"]
    assert len(workers) == 1 and workers[0]["status"] == "live" and not workers[0]["drift"]
    assert httpx.get(f"{url}/health/live").json() == {"status": "ok"}
    health = httpx.get(f"{url}/health").json()
    assert health["status"] == "ok" and health["workers_live"] == 1
    text = httpx.get(f"{url}/metrics").text
    assert "conveyor_jobs_submitted_total" in text
    assert 'conveyor_http_requests_total{method="GET",route="/v1/stats",status="200"}' in text


def test_errors_are_problem_documents(url: str) -> None:
    post = lambda body, **kw: httpx.post(f"{url}/v1/jobs", content=body,  # noqa: E731
                                         headers={"content-type": "application/json",
                                                  **kw.get("headers", {})})
    assert_problem(post(b"{nope"), 400)
    assert_problem(post(b""), 400)
    assert_problem(post(b"[1, 2]"), 422)
    assert_problem(post(b'{"task": "math.add", "args": {"a": NaN, "b": 1}}'), 400)
    assert_problem(post(json.dumps({"task": "math.add", "args": {"a": 1}}).encode()), 422)
    body = assert_problem(post(json.dumps({"operations": []}).encode()), 422)
    assert "operations" in body["detail"]
    assert_problem(post(json.dumps({"task": "math.add", "args": {"a": 1, "b": 2},
                                    "bogus": 1}).encode()), 422)
    assert_problem(post(b"{" * 5000 + b"}" * 5000), 422)
    assert_problem(httpx.post(f"{url}/v1/jobs", content=b"a=b",
                              headers={"content-type": "text/plain"}), 415)
    over = b'{"task": "sys.noop", "args": {}, "pad": "' + b"x" * (1024 * 1024) + b'"}'
    assert_problem(post(over), 413)

    def chunks() -> Iterator[bytes]:
        for _ in range(2048):
            yield b" " * 1024

    assert_problem(httpx.post(f"{url}/v1/jobs", content=chunks(),
                              headers={"content-type": "application/json"}), 413)
    assert_problem(httpx.get(f"{url}/v1/nothing-here"), 404)
    assert_problem(httpx.delete(f"{url}/v1/jobs"), 405)
    assert_problem(post(json.dumps({"task": "sys.noop"}).encode(),
                        headers={"Idempotency-Key": "k" * 300}), 422)


def test_exactly_one_job_per_idempotency_key_under_concurrency(url: str) -> None:
    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            return await asyncio.gather(*(
                http.post("/v1/jobs", json={"task": "math.add", "args": {"a": 1, "b": 2}},
                          headers={"Idempotency-Key": "api-burst"}) for _ in range(50)))

    answers = asyncio.run(burst())
    assert {a.json()["id"] for a in answers} == {answers[0].json()["id"]}
    assert sorted(a.status_code for a in answers).count(202) == 1
    assert all(a.headers.get("idempotent-replayed") == "true"
               for a in answers if a.status_code == 200)


def test_async_client_round_trip(url: str) -> None:
    async def go() -> dict:
        async with AsyncClient(url) as client:
            job = await client.submit(operations=[
                {"task": "math.pow", "args": {"base": 2, "exp": 100}},
                {"task": "math.sqrt", "args": {"x": 144}},
            ])
            return await client.wait(job["id"], timeout_s=30)

    job = asyncio.run(go())
    assert [o["result"] for o in job["operations"]] == [2**100, 12]


def test_openapi_documents_the_contract(url: str) -> None:
    spec = httpx.get(f"{url}/openapi.json").json()
    for path in ("/v1/jobs", "/v1/jobs/batch", "/v1/jobs/{job_id}", "/v1/dlq",
                 "/v1/dlq/replay", "/v1/stats", "/v1/tasks", "/health/ready"):
        assert path in spec["paths"], path
    body = spec["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]["application/json"]
    assert "operations" in json.dumps(body)
    assert httpx.get(f"{url}/docs").status_code == 200
