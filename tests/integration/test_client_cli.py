"""The Python clients and the ``conveyor`` CLI against a real ``conveyor serve`` subprocess
(API and worker in one process, SQLite in a temporary directory), over loopback HTTP."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.client import ApiError, AsyncClient, Client
from tests.support.processes import ConveyorProcess, free_port, serve, wait_until

FIB_90 = 2880067194370816120


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConveyorProcess]:
    proc = serve(tmp_path_factory.mktemp("client-cli"), env={
        "CONVEYOR_RETRY_BASE_S": "0.05", "CONVEYOR_RETRY_CAP_S": "0.1",
        "CONVEYOR_PROCESSES": "2",
    })
    yield proc
    assert proc.stop() == 0, "SIGTERM stops serve cleanly:\n" + proc.log_path.read_text()[-3000:]


@pytest.fixture()
def client(server: ConveyorProcess) -> Iterator[Client]:
    with Client(server.url, timeout_s=30) as c:
        yield c


def cli(*args: str, url: str | None = None, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    extra = ["--url", url] if url else []
    return subprocess.run([sys.executable, "-m", "conveyor.cli", *args, *extra],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "200", **(env or {})})


def no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stdout + result.stderr, result.stderr


# The Python client -------------------------------------------------------------------


def test_client_add(client: Client) -> None:
    job = client.submit("math.add", {"a": 2, "b": 3})
    assert job["status"] in ("queued", "running", "succeeded")
    done = client.wait(job["id"], timeout_s=30)
    assert done["status"] == "succeeded"
    [op] = done["operations"]
    assert op["result"] == 5 and op["attempts"] == 1 and op["error"] is None


def test_a_dead_operation_fails_the_job_but_not_its_siblings(client: Client) -> None:
    job = client.submit(operations=[
        {"task": "math.add", "args": {"a": 2, "b": 3}},
        {"task": "math.div", "args": {"a": 1, "b": 0}},
        {"task": "math.fibonacci", "args": {"n": 90}},
    ])
    done = client.wait(job["id"], timeout_s=30)
    assert done["status"] == "failed"
    add, div, fib = done["operations"]
    assert (add["status"], add["result"]) == ("succeeded", 5)
    assert (fib["status"], fib["result"]) == ("succeeded", FIB_90)
    assert div["status"] == "dead" and div["attempts"] == 1, "ZeroDivisionError is permanent"
    assert div["error"]["type"] == "ZeroDivisionError" and div["error"]["message"]
    assert div["result"] is None


def test_retries_until_success(client: Client) -> None:
    done = client.wait(client.submit("sys.fail", {"times": 2})["id"], timeout_s=30)
    [op] = done["operations"]
    assert done["status"] == "succeeded" and op["attempts"] == 3 and op["result"] == 3


def test_idempotency_and_errors(client: Client) -> None:
    first = client.submit("math.mul", {"a": 3, "b": 4}, idempotency_key="cc-1")
    assert client.submit("math.mul", {"a": 3, "b": 4}, idempotency_key="cc-1")["id"] == first["id"]
    with pytest.raises(ApiError) as conflict:
        client.submit("math.mul", {"a": 3, "b": 5}, idempotency_key="cc-1")
    assert conflict.value.status == 409 and str(conflict.value) == conflict.value.problem["detail"]
    with pytest.raises(ApiError) as unknown:
        client.submit("no.such", {})
    assert unknown.value.status == 422 and "no.such" in str(unknown.value)
    with pytest.raises(ApiError) as missing:
        client.cancel("0" * 32)
    assert missing.value.status == 404
    with pytest.raises(ValueError):
        client.submit()
    with pytest.raises(TimeoutError):
        client.wait(client.submit("sys.sleep", {"seconds": 5})["id"], timeout_s=0.2)


def test_client_batch_list_cancel_stats_tasks(client: Client) -> None:
    ids = client.submit_batch([{"task": "sys.noop", "queue": "cc-idle"}] * 5)
    assert len(ids) == 5
    page = client.list(queue="cc-idle", limit=3)
    assert len(page["jobs"]) == 3 and page["next_cursor"] == page["jobs"][-1]["id"]
    rest = client.list(queue="cc-idle", limit=3, cursor=page["next_cursor"])
    assert {j["id"] for j in page["jobs"] + rest["jobs"]} == set(ids)
    assert rest["next_cursor"] is None
    assert client.cancel(ids[0])["status"] == "cancelled"
    assert [j["id"] for j in client.list(queue="cc-idle", status="cancelled")["jobs"]] == [ids[0]]
    queues = {q["queue"]: q for q in client.stats()["queues"]}
    assert queues["cc-idle"]["counts"]["queued"] == 4
    assert {"math.add", "math.fibonacci", "sys.fail"} <= {t["name"] for t in client.tasks()}


def test_async_client(server: ConveyorProcess) -> None:
    async def go() -> None:
        async with AsyncClient(server.url) as client:
            jobs = await asyncio.gather(*(client.submit("math.factorial", {"n": n})
                                          for n in range(5)))
            done = await asyncio.gather(*(client.wait(j["id"], timeout_s=30) for j in jobs))
            assert [d["operations"][0]["result"] for d in done] == [1, 1, 2, 6, 24]
            ids = await client.submit_batch([{"task": "math.sqrt", "args": {"x": 81}}])
            assert (await client.wait(ids[0]))["operations"][0]["result"] == 9
            assert (await client.list(limit=1))["jobs"]
            assert "queues" in await client.stats()
            assert await client.tasks()
            assert isinstance((await client.dlq())["operations"], list)
            with pytest.raises(ApiError) as err:
                await client.replay()
            assert err.value.status == 422

    asyncio.run(go())


# The CLI -----------------------------------------------------------------------------


def test_cli_submit_wait_prints_the_result(server: ConveyorProcess) -> None:
    table = cli("submit", "math.add", "--args", '{"a":2,"b":3}', "--wait", url=server.url)
    assert table.returncode == 0, table.stderr
    assert "succeeded" in table.stdout and " 5 " in table.stdout
    raw = cli("submit", "math.add", "--args", '{"a":2,"b":3}', "--wait", "--json",
              url=server.url)
    [job] = json.loads(raw.stdout)
    assert job["operations"][0]["result"] == 5
    via_env = cli("submit", "math.fibonacci", "--args", '{"n":90}', "--wait", "--json",
                  env={"CONVEYOR_URL": server.url})
    assert via_env.returncode == 0, via_env.stderr
    assert json.loads(via_env.stdout)[0]["operations"][0]["result"] == FIB_90


def test_cli_submit_count_and_idempotency(server: ConveyorProcess, client: Client) -> None:
    many = cli("submit", "sys.noop", "--count", "3", "--queue", "cli-idle", "--json",
               url=server.url)
    assert many.returncode == 0, many.stderr
    ids = json.loads(many.stdout)
    assert len(ids) == 3 and all(client.get(i)["queue"] == "cli-idle" for i in ids)
    once = [cli("submit", "math.add", "--args", '{"a":1,"b":1}', "--idempotency-key", "cli-k",
                "--json", url=server.url) for _ in range(2)]
    assert json.loads(once[0].stdout)["id"] == json.loads(once[1].stdout)["id"]
    both = cli("submit", "sys.noop", "--count", "2", "--idempotency-key", "x", url=server.url)
    assert both.returncode == 2 and "--idempotency-key" in both.stderr


def test_cli_jobs_list_show_cancel(server: ConveyorProcess, client: Client) -> None:
    job = client.submit("sys.noop", {}, delay_s=600)
    shown = cli("jobs", "show", job["id"], url=server.url)
    assert shown.returncode == 0 and job["id"] in shown.stdout and "sys.noop" in shown.stdout
    cancelled = cli("jobs", "cancel", job["id"], "--json", url=server.url)
    assert json.loads(cancelled.stdout)["status"] == "cancelled"
    listed = cli("jobs", "list", "--status", "cancelled", "--task", "sys.noop", "--json",
                 url=server.url)
    assert job["id"] in [j["id"] for j in json.loads(listed.stdout)]
    table = cli("jobs", "list", "--limit", "5", url=server.url)
    assert table.returncode == 0 and "status" in table.stdout


def test_cli_dead_letters_list_show_replay(server: ConveyorProcess, client: Client) -> None:
    job = client.wait(client.submit("sys.fail", {})["id"], timeout_s=30)
    [op] = job["operations"]
    assert job["status"] == "failed" and op["status"] == "dead" and op["attempts"] == 3
    listed = cli("dlq", "list", "--task", "sys.fail", "--limit", "500", "--json",
                 url=server.url)
    assert op["id"] in [d["id"] for d in json.loads(listed.stdout)]
    shown = cli("dlq", "show", op["id"], url=server.url)
    assert shown.returncode == 0 and "RuntimeError" in shown.stdout
    assert cli("dlq", "show", "0" * 32, url=server.url).returncode == 1
    replayed = cli("dlq", "replay", op["id"], "--json", url=server.url)
    assert replayed.returncode == 0, replayed.stderr
    assert json.loads(replayed.stdout) == {"replayed": [op["id"]], "count": 1}

    def ran_again() -> dict | None:
        now = client.get(job["id"])
        again = now["operations"][0]
        return now if now["status"] == "failed" and again["finished_at"] > op["finished_at"] \
            else None

    again = wait_until(ran_again, 30)["operations"][0]
    assert again["attempts"] == 3, "a replay starts the attempts again from zero"
    plain = cli("dlq", "replay", "--task", "no.such.task", url=server.url)
    assert plain.returncode == 0 and "replayed 0" in plain.stdout
    nothing = cli("dlq", "replay", url=server.url)
    assert nothing.returncode == 2 and "what to replay" in nothing.stderr


def test_cli_tasks_and_stats(server: ConveyorProcess) -> None:
    tasks = cli("tasks", url=server.url)
    assert tasks.returncode == 0 and "math.fibonacci" in tasks.stdout
    assert {t["name"] for t in json.loads(cli("tasks", "--json", url=server.url).stdout)} >= {
        "math.add", "sys.fail"}
    stats = cli("stats", url=server.url)
    assert stats.returncode == 0 and "default" in stats.stdout
    queues = json.loads(cli("stats", "--json", url=server.url).stdout)["queues"]
    assert "default" in [q["queue"] for q in queues]


def test_cli_errors_are_one_line_without_traceback(server: ConveyorProcess) -> None:
    bad_args = cli("submit", "math.add", "--args", "{oops", url=server.url)
    assert bad_args.returncode == 2 and "--args is not valid JSON" in bad_args.stderr
    not_object = cli("submit", "math.add", "--args", "[1, 2]", url=server.url)
    assert not_object.returncode == 2
    unknown = cli("submit", "no.such.task", url=server.url)
    assert unknown.returncode == 1 and "unknown task 'no.such.task'" in unknown.stderr
    wrong = cli("submit", "math.add", "--args", '{"a": "x", "b": 1}', url=server.url)
    assert wrong.returncode == 1 and "args.a" in wrong.stderr
    missing = cli("jobs", "show", "0" * 32, url=server.url)
    assert missing.returncode == 1 and "no job" in missing.stderr
    down_url = f"http://127.0.0.1:{free_port()}"
    down = cli("stats", url=down_url)
    assert down.returncode == 1 and f"cannot reach Conveyor at {down_url}" in down.stderr
    for result in (bad_args, not_object, unknown, wrong, missing, down):
        no_traceback(result)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_serve_announces_itself(server: ConveyorProcess) -> None:
    log = server.log_path.read_text()
    assert f"Conveyor API on {server.url}" in log and "tasks" in log and "sqlite:///" in log


def test_migrate_then_api_and_worker_as_separate_processes(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'split.db'}"
    for _ in range(2):  # idempotent
        migrated = cli("migrate", "--store", store)
        assert migrated.returncode == 0, migrated.stderr
        assert "schema at version" in migrated.stdout
    port = free_port()
    api = ConveyorProcess(["api", "--store", store, "--port", str(port)],
                          tmp_path / "api.log", port=port).start()
    worker = ConveyorProcess(["worker", "--store", store, "--processes", "1"],
                             tmp_path / "worker.log")
    try:
        api.wait_ready()
        with Client(api.url) as client:
            job = client.submit("math.add", {"a": 20, "b": 22})
            worker.start()
            done = client.wait(job["id"], timeout_s=60)
        assert done["operations"][0]["result"] == 42
    finally:
        stopped = [worker.stop() if worker.proc else 0, api.stop()]
    assert stopped == [0, 0], "SIGTERM stops api and worker cleanly"
