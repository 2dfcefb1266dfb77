"""The HTTP API over real loopback HTTP, on a real SQLite store, with an in-process worker.

One server per module (uvicorn in a background thread of this process); every test reads
and writes through HTTP only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

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


def test_timeout_cancels_an_async_attempt(url: str) -> None:
    with Client(url) as client:
        started = time.monotonic()
        job = client.submit("sys.sleep", {"seconds": 30}, timeout_s=0.3, max_attempts=1)
        done = client.wait(job["id"], timeout_s=20)
    op = done["operations"][0]
    assert op["status"] == "dead" and op["attempts"] == 1
    assert op["error"]["type"] == "TaskTimeout"
    assert "timeout of 0.3 s" in op["error"]["message"]
    assert time.monotonic() - started < 15


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


def test_submission_routes_served_plain_keep_the_documented_contract(url: str) -> None:
    """The submission routes are plain Starlette routes matched ahead of FastAPI's
    (conveyor.api.submit); their FastAPI declarations still document them, and the app's
    metrics, method and error handling still apply."""
    post = httpx.get(f"{url}/openapi.json").json()["paths"]["/v1/jobs"]["post"]
    assert {"in": "header", "name": "idempotency-key"}.items() <= post["parameters"][0].items()
    assert post["security"] == [{"HTTPBearer": []}]
    assert httpx.post(f"{url}/v1/jobs", json={"task": "sys.noop"}).status_code == 202
    assert httpx.post(f"{url}/v1/jobs/batch",
                      json={"jobs": [{"task": "sys.noop"}]}).json()["count"] == 1
    text = httpx.get(f"{url}/metrics").text
    for route in ("/v1/jobs", "/v1/jobs/batch"):
        assert f'conveyor_http_requests_total{{method="POST",route="{route}",status="202"}}' \
            in text
    wrong_method = httpx.put(f"{url}/v1/jobs", json={"task": "sys.noop"})
    assert_problem(wrong_method, 405)
    assert wrong_method.headers["allow"] == "GET, POST"
    not_an_object = assert_problem(httpx.post(f"{url}/v1/jobs/batch", json={"jobs": 1}), 422)
    assert "jobs" in not_an_object["detail"]


def _post_raw(url: str, body: bytes | Iterator[bytes], path: str = "/v1/jobs",
              **headers: str) -> httpx.Response:
    return httpx.post(f"{url}{path}", content=body, timeout=30,
                      headers={"content-type": "application/json", **headers})


def test_accepted_submission_has_location_and_idempotent_replays(url: str) -> None:
    first = httpx.post(f"{url}/v1/jobs", json={"task": "math.add", "args": {"a": 1, "b": 1}},
                       headers={"Idempotency-Key": "api-location"})
    assert first.status_code == 202, first.text
    job = first.json()
    assert first.headers["location"] == f"/v1/jobs/{job['id']}"
    assert "idempotent-replayed" not in first.headers
    assert job["idempotency_key"] == "api-location" and job["operations"][0]["task"] == "math.add"
    again = httpx.post(f"{url}/v1/jobs", json={"task": "math.add", "args": {"a": 1, "b": 1}},
                       headers={"Idempotency-Key": "api-location"})
    assert again.status_code == 200 and again.json()["id"] == job["id"]
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["location"] == first.headers["location"]
    other = httpx.post(f"{url}/v1/jobs", json={"task": "math.add", "args": {"a": 1, "b": 2}},
                       headers={"Idempotency-Key": "api-location"})
    assert "Idempotency-Key" in assert_problem(other, 409)["detail"]
    with Client(url) as client, pytest.raises(ApiError) as conflict:
        client.submit("math.add", {"a": 9, "b": 9}, idempotency_key="api-location")
    assert conflict.value.status == 409 and "Idempotency-Key" in str(conflict.value)


def test_validation_errors_name_what_is_wrong(url: str) -> None:
    unknown = assert_problem(httpx.post(f"{url}/v1/jobs", json={"task": "no.such.task"}), 422)
    assert "no.such.task" in unknown["detail"] and "unknown task" in unknown["detail"]
    wrong_type = httpx.post(f"{url}/v1/jobs", json={"task": "math.add",
                                                    "args": {"a": "two", "b": 1}})
    body = assert_problem(wrong_type, 422)
    assert "args.a" in body["detail"] and "expected number" in body["detail"]
    assert body["errors"] and "args.a" in json.dumps(body["errors"])
    many = httpx.post(f"{url}/v1/jobs", json={"operations": [
        {"task": "math.add", "args": {"a": 1, "b": 2}}, {"task": "nope"}]})
    body = assert_problem(many, 422)
    assert "nope" in body["detail"] and body["instance"] == "/v1/jobs"
    for bad in (b'"just a string"', b"null", b"[]", b"Infinity", b'{"task": "sys.noop"} x'):
        assert _post_raw(url, bad).status_code in (400, 422), bad


def test_body_limit_is_exact_and_enforced_while_streaming(url: str) -> None:
    limit = 1024 * 1024
    doc = json.dumps({"task": "sys.noop", "args": {}}).encode()
    exactly = doc + b" " * (limit - len(doc))
    assert _post_raw(url, exactly).status_code == 202
    assert_problem(_post_raw(url, exactly + b" "), 413)

    def chunked(total: int) -> Iterator[bytes]:
        yield doc
        left = total - len(doc)
        while left > 0:
            step = min(left, 64 * 1024)
            yield b" " * step
            left -= step

    assert _post_raw(url, chunked(limit)).status_code == 202
    assert_problem(_post_raw(url, chunked(limit + 1)), 413)


def test_oversized_content_length_is_refused_before_the_body_is_read(url: str) -> None:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 2000000000\r\n\r\n{")
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"application/problem+json" in answer


@pytest.mark.parametrize("body", [
    b"[" * 10_000 + b"]" * 10_000,
    b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
    b'{"task": "sys.noop", "args": {"x": ' + b"[" * 10_000 + b"]" * 10_000 + b"}}",
    b"[" * 10_000,
    b'["]",' * 10_000 + b"1" + b"]" * 10_000,
], ids=["arrays", "objects", "in-args", "unclosed", "brackets-in-strings"])
def test_deep_nesting_is_a_client_error(url: str, body: bytes) -> None:
    for path in ("/v1/jobs", "/v1/jobs/batch", "/v1/dlq/replay"):
        response = _post_raw(url, body, path)
        assert 400 <= response.status_code < 500, (path, response.text)
        assert_problem(response, response.status_code)


def test_unknown_ids_are_404(url: str) -> None:
    missing = "0" * 32
    body = assert_problem(httpx.get(f"{url}/v1/jobs/{missing}"), 404)
    assert missing in body["detail"] and body["instance"] == f"/v1/jobs/{missing}"
    assert_problem(httpx.get(f"{url}/v1/jobs/{missing}/operations"), 404)
    assert_problem(httpx.get(f"{url}/v1/jobs/{missing}/operations/{missing}"), 404)
    assert_problem(httpx.post(f"{url}/v1/jobs/{missing}/cancel"), 404)
    with Client(url) as client, pytest.raises(ApiError) as err:
        client.get(missing)
    assert err.value.status == 404 and err.value.problem["status"] == 404


def test_batch_is_all_or_nothing(url: str) -> None:
    jobs = [{"task": "sys.noop", "queue": "batch-q"},
            {"operations": [{"task": "math.add", "args": {"a": 1, "b": 2}}], "queue": "batch-q"}]
    answer = httpx.post(f"{url}/v1/jobs/batch", json={"jobs": jobs})
    assert answer.status_code == 202, answer.text
    ids = answer.json()["ids"]
    assert answer.json()["count"] == 2 and len(set(ids)) == 2
    bad = httpx.post(f"{url}/v1/jobs/batch", json={"jobs": [*jobs, {"task": "nope"}]})
    assert "jobs[2]" in assert_problem(bad, 422)["detail"]
    listed = httpx.get(f"{url}/v1/jobs", params={"queue": "batch-q"}).json()["jobs"]
    assert sorted(j["id"] for j in listed) == sorted(ids), "a rejected batch stores nothing"
    for body in ({"jobs": []}, {"jobs": "x"}, {}, {"jobs": jobs, "extra": 1}):
        assert_problem(httpx.post(f"{url}/v1/jobs/batch", json=body), 422)
    assert_problem(_post_raw(url, b"{", "/v1/jobs/batch"), 400)


def test_dlq_pages_by_cursor_and_filters_by_id(url: str) -> None:
    with Client(url) as client:
        jobs = [client.submit("sys.fail", {}, max_attempts=1, metadata={"n": i})
                for i in range(3)]
        dead = [client.wait(j["id"], timeout_s=30)["operations"][0]["id"] for j in jobs]
        seen: list[str] = []
        cursor = None
        while True:
            page = client.dlq(task="sys.fail", limit=1, cursor=cursor)
            seen += [op["id"] for op in page["operations"]]
            assert len(page["operations"]) <= 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert set(dead) <= set(seen) and len(seen) == len(set(seen))
        assert client.dlq(ids=[dead[1]])["operations"][0]["id"] == dead[1]
        assert [o["id"] for o in client.dlq(ids=dead[:2], limit=500)["operations"]] == dead[:2]
        assert client.dlq(task="math.add")["operations"] == []
        failed = client.list(status="failed", limit=500)["jobs"]
        assert {j["id"] for j in jobs} <= {j["id"] for j in failed}
    assert_problem(httpx.get(f"{url}/v1/dlq", params={"limit": 501}), 422)
    assert_problem(httpx.get(f"{url}/v1/dlq", params={"cursor": "x"}), 422)


def test_replay_by_filter_and_all(url: str) -> None:
    with Client(url) as client:
        job = client.submit("sys.fail", {}, max_attempts=1)
        op_id = client.wait(job["id"])["operations"][0]["id"]
        assert op_id in client.replay(task="sys.fail", queue="default")["replayed"]
        client.wait(job["id"], timeout_s=30)
        wait_until(lambda: client.get(job["id"])["status"] == "failed", 30)
        every = client.replay(all=True)
        assert op_id in every["replayed"] and every["count"] == len(every["replayed"])
    # an unknown id (or another tenant's) is 404, like in every other route
    assert_problem(httpx.post(f"{url}/v1/dlq/replay", json={"ids": ["0" * 32]}), 404)
    for body in ({}, {"all": False}, {"ids": None}, {"bogus": 1}):
        assert_problem(httpx.post(f"{url}/v1/dlq/replay", json=body), 422)


def test_health_endpoints_and_stats_shape(url: str) -> None:
    assert httpx.get(f"{url}/health/ready").json() == {"status": "ok"}
    health = httpx.get(f"{url}/health").json()
    assert health["checks"] == {"store": "ok"}
    queue = next(q for q in httpx.get(f"{url}/v1/stats").json()["queues"]
                 if q["queue"] == "default")
    assert set(queue) >= {"queue", "counts", "oldest_ready_age_s", "throughput_1m_per_s",
                          "throughput_5m_per_s", "failed_last_5m"}
    assert queue["counts"]["succeeded"] > 0


# A second server whose store and readiness fail on demand: 5xx paths end to end. -------


class FlakyStore:
    """A real SQLite store whose reads fail on demand with the given exception."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.failure: BaseException | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def get_jobs(self, *args: Any, **kwargs: Any) -> Any:
        if self.failure is not None:
            raise self.failure
        return await self.inner.get_jobs(*args, **kwargs)


@pytest.fixture(scope="module")
def flaky(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, FlakyStore, dict]]:
    from conveyor.api.app import create_app
    from conveyor.config import Limits
    from conveyor.store.sqlite import SQLiteStore
    from conveyor.tasks import Registry
    from conveyor.wiring import make_service

    db = Path(tmp_path_factory.mktemp("flaky")) / "flaky.db"
    config = load_config({"store": f"sqlite:///{db}"}, environ={}).replace(
        limits=Limits(max_batch_body_bytes=4096))
    store = FlakyStore(SQLiteStore(db))
    state: dict[str, Any] = {"down": None}
    servers: list[uvicorn.Server] = []
    port = free_port()

    async def readiness() -> None:
        if state["down"] is not None:
            raise state["down"]

    async def main() -> None:
        await store.migrate()
        await store.open()
        service = make_service(config, store, Registry.load())  # type: ignore[arg-type]
        app = create_app(service, config, readiness=readiness)
        servers.append(uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                                     log_level="critical", lifespan="off")))
        await servers[0].serve()
        await store.close()

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: _ready(base), 30)
    yield base, store, state
    servers[0].should_exit = True
    thread.join(timeout=30)


def test_store_unavailable_is_503_with_retry_after(flaky: tuple[str, FlakyStore, dict]
                                                   ) -> None:
    from conveyor.errors import StoreUnavailable

    base, store, _ = flaky
    job = httpx.post(f"{base}/v1/jobs", json={"task": "sys.noop"}).json()
    store.failure = StoreUnavailable("database is locked")
    try:
        answer = httpx.get(f"{base}/v1/jobs/{job['id']}")
        assert_problem(answer, 503)
        assert answer.headers["retry-after"] == "1"
    finally:
        store.failure = None
    assert httpx.get(f"{base}/v1/jobs/{job['id']}").status_code == 200


def test_unexpected_errors_are_500_without_internals(flaky: tuple[str, FlakyStore, dict]
                                                     ) -> None:
    base, store, _ = flaky
    job = httpx.post(f"{base}/v1/jobs", json={"task": "sys.noop"}).json()
    store.failure = RuntimeError("secret-internal-detail in /srv/conveyor/store.py")
    try:
        answer = httpx.get(f"{base}/v1/jobs/{job['id']}")
    finally:
        store.failure = None
    body = assert_problem(answer, 500)
    assert "secret" not in answer.text and "store.py" not in answer.text
    assert body["detail"] == "an unexpected error occurred"


def test_readiness_failure_is_503_with_the_reason(flaky: tuple[str, FlakyStore, dict]) -> None:
    from conveyor.errors import SchemaMismatch, StoreUnavailable

    base, _, state = flaky
    for failure, reason in ((StoreUnavailable("cannot open database file"), "cannot open"),
                            (SchemaMismatch("schema version 9, expected 3"), "schema version"),
                            (OSError("disk on fire"), "disk on fire")):
        state["down"] = failure
        try:
            answer = httpx.get(f"{base}/health/ready")
            health = httpx.get(f"{base}/health")
        finally:
            state["down"] = None
        assert reason in assert_problem(answer, 503)["detail"]
        assert answer.headers["retry-after"] == "1"
        assert health.status_code == 503 and health.json()["status"] == "unavailable"
    assert httpx.get(f"{base}/health/ready").status_code == 200
    assert httpx.get(f"{base}/health/live").json() == {"status": "ok"}


def test_batch_body_limit_comes_from_config(flaky: tuple[str, FlakyStore, dict]) -> None:
    base, _, _ = flaky
    small = httpx.post(f"{base}/v1/jobs/batch", json={"jobs": [{"task": "sys.noop"}] * 10})
    assert small.status_code == 202 and small.json()["count"] == 10
    big = httpx.post(f"{base}/v1/jobs/batch", json={"jobs": [{"task": "sys.noop"}] * 500})
    assert_problem(big, 413)
