"""API keys, tenants and scopes on a real ``conveyor serve`` (SQLite) over loopback HTTP.

Every route is tried with no key, malformed keys, a revoked key, another tenant's key and
a key without the needed scope; tenant B's ids are probed with tenant A's key.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.auth import bearer, create_key, keys_cli
from tests.support.processes import ConveyorProcess, serve, wait_until

PROBLEM = "application/problem+json"


@dataclass
class World:
    proc: ConveyorProcess
    store: str
    keys: dict[str, str]
    ids: dict[str, str]  # job_a, op_a, job_b, op_b (dead operations)
    b_jobs: list[str]

    @property
    def url(self) -> str:
        return self.proc.url


def _dead_job(url: str, key: str) -> tuple[str, str]:
    r = httpx.post(f"{url}/v1/jobs", headers=bearer(key),
                   json={"operations": [{"task": "sys.fail", "args": {}, "max_attempts": 1}]})
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]

    def dead() -> dict[str, Any] | None:
        job = httpx.get(f"{url}/v1/jobs/{job_id}", headers=bearer(key)).json()
        return job if job["status"] == "failed" else None

    job = wait_until(dead, 30)
    return job_id, job["operations"][0]["id"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = Path(tmp_path_factory.mktemp("auth"))
    env = {"CONVEYOR_AUTH": "required", "CONVEYOR_RATE_LIMIT_PER_S": "0",
           "CONVEYOR_RETRY_BASE_S": "0.05"}
    proc = serve(tmp, env=env)
    store = f"sqlite:///{tmp / 'conveyor.db'}"
    keys = {
        "a_rw": create_key(store, "tenant-a", "read,submit")[1],
        "a_read": create_key(store, "tenant-a", "read")[1],
        "a_admin": create_key(store, "tenant-a", "admin")[1],
        "b_admin": create_key(store, "tenant-b", "admin")[1],
    }
    revoked_id, keys["revoked"] = create_key(store, "tenant-a", "admin", "to revoke")
    ids: dict[str, str] = {}
    ids["job_a"], ids["op_a"] = _dead_job(proc.url, keys["a_admin"])
    ids["job_b"], ids["op_b"] = _dead_job(proc.url, keys["b_admin"])
    # the key to revoke works until it is revoked
    assert httpx.get(f"{proc.url}/v1/jobs/{ids['job_a']}",
                     headers=bearer(keys["revoked"])).status_code == 200
    assert keys_cli("revoke", revoked_id, store=store).returncode == 0
    batch = httpx.post(f"{proc.url}/v1/jobs/batch", headers=bearer(keys["b_admin"]),
                       json={"jobs": [{"task": "sys.noop", "queue": "probe"}] * 1000})
    assert batch.status_code == 202, batch.text
    yield World(proc, store, keys, ids, batch.json()["ids"])
    proc.stop()


# (method, path, body, scope needed); {job}/{op} are tenant A's ids.
ROUTES: list[tuple[str, str, Any, str]] = [
    ("POST", "/v1/jobs", {"task": "sys.noop"}, "submit"),
    ("POST", "/v1/jobs/batch", {"jobs": [{"task": "sys.noop"}]}, "submit"),
    ("GET", "/v1/jobs", None, "read"),
    ("GET", "/v1/jobs/{job}", None, "read"),
    ("GET", "/v1/jobs/{job}/operations", None, "read"),
    ("GET", "/v1/jobs/{job}/operations/{op}", None, "read"),
    ("POST", "/v1/jobs/{job}/cancel", None, "submit"),
    ("GET", "/v1/dlq", None, "read"),
    ("GET", "/v1/dlq?job_id={job}", None, "read"),
    ("POST", "/v1/dlq/replay", {"ids": ["{op}"]}, "admin"),
    ("POST", "/v1/dlq/replay", {"job_id": "{job}"}, "admin"),
    ("GET", "/v1/stats", None, "read"),
    ("GET", "/v1/tasks", None, "read"),
    ("GET", "/v1/workers", None, "read"),
]
ROUTE_IDS = [f"{m} {p}{' ' + json.dumps(b) if b else ''}" for m, p, b, _ in ROUTES]


def call(world: World, route: tuple[str, str, Any, str], headers: dict[str, str],
         tenant: str = "a") -> httpx.Response:
    method, path, body, _ = route
    subs = {"{job}": world.ids[f"job_{tenant}"], "{op}": world.ids[f"op_{tenant}"]}
    for k, v in subs.items():
        path = path.replace(k, v)
    if body is not None:
        text = json.dumps(body)
        for k, v in subs.items():
            text = text.replace(k, v)
        body = json.loads(text)
    return httpx.request(method, world.url + path, json=body, headers=headers, timeout=10)


def assert_problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, (r.request.method, r.request.url, r.text)
    assert r.headers["content-type"].startswith(PROBLEM)
    body = r.json()
    assert body["status"] == status and body["detail"] and "Traceback" not in r.text
    return body


BAD_HEADERS = {
    "no key": {},
    "bearer only": {"Authorization": "Bearer"},
    "basic scheme": {"Authorization": "Basic dXNlcjpwYXNz"},
    "not a key": {"Authorization": "Bearer hunter2"},
    "bad secret": {"Authorization": "Bearer cvk_0123456789ab_" + "A" * 43},
    "no scheme": {"Authorization": "cvk_0123456789ab_" + "A" * 43},
}


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
def test_every_route_refuses_missing_malformed_and_revoked_keys(world: World,
                                                                route: Any) -> None:
    for name, headers in BAD_HEADERS.items():
        r = call(world, route, headers)
        assert_problem(r, 401)
        assert r.headers["www-authenticate"].startswith("Bearer"), name
    assert_problem(call(world, route, bearer(world.keys["revoked"])), 401)
    # a real key of this tenant with a forged secret is refused too
    real = world.keys["a_admin"]
    forged = real[:-1] + ("A" if real[-1] != "A" else "B")
    assert_problem(call(world, route, bearer(forged)), 401)


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
def test_every_route_needs_its_scope(world: World, route: Any) -> None:
    scope = route[3]
    weaker = {"submit": "a_read", "read": None, "admin": "a_rw"}[scope]
    if weaker is not None:
        body = assert_problem(call(world, route, bearer(world.keys[weaker])), 403)
        assert scope in body["detail"]
    allowed = {"submit": "a_rw", "read": "a_read", "admin": "a_admin"}[scope]
    r = call(world, route, bearer(world.keys[allowed]))
    assert r.status_code < 300, (route, r.text)


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
def test_another_tenants_key_sees_nothing(world: World, route: Any) -> None:
    """Tenant B's admin key on tenant A's ids: 404 wherever an id is named; lists answer
    but carry none of A's data."""
    r = call(world, route, bearer(world.keys["b_admin"]), tenant="a")
    _, path, body, _ = route
    names_an_id = "{job}" in path or '"{' in json.dumps(body)
    if names_an_id:  # the problem names the id asked for, nothing else of A's
        assert set(assert_problem(r, 404)) == {"type", "title", "status", "detail", "instance"}
        assert "sys.fail" not in r.text and "tenant-a" not in r.text
    else:
        assert r.status_code < 300, r.text
        for secret in (world.ids["job_a"], world.ids["op_a"]):
            assert secret not in r.text
    after = httpx.get(f"{world.url}/v1/jobs/{world.ids['job_a']}",
                      headers=bearer(world.keys["a_read"])).json()
    assert after["status"] == "failed", "B's request changed nothing of A's"


def test_lists_and_stats_are_per_tenant(world: World) -> None:
    a = httpx.get(f"{world.url}/v1/jobs", params={"limit": 500},
                  headers=bearer(world.keys["a_read"])).json()["jobs"]
    assert a and world.ids["job_a"] in {j["id"] for j in a}
    assert not {j["id"] for j in a} & set(world.b_jobs)
    stats_a = httpx.get(f"{world.url}/v1/stats", headers=bearer(world.keys["a_read"])).json()
    assert "probe" not in {q["queue"] for q in stats_a["queues"]}, "B's queue is not A's"
    dlq_a = httpx.get(f"{world.url}/v1/dlq", headers=bearer(world.keys["a_read"])).json()
    assert world.ids["op_b"] not in {o["id"] for o in dlq_a["operations"]}


def test_probing_1000_of_b_job_ids_with_a_key_finds_none(world: World) -> None:
    assert len(world.b_jobs) == 1000
    found = []
    with httpx.Client(base_url=world.url, headers=bearer(world.keys["a_admin"]),
                      timeout=10) as client:
        for job_id in world.b_jobs:
            r = client.get(f"/v1/jobs/{job_id}")
            if r.status_code != 404:
                found.append((job_id, r.status_code))
        for job_id in world.b_jobs[:50]:
            assert client.post(f"/v1/jobs/{job_id}/cancel").status_code == 404
            assert client.get(f"/v1/jobs/{job_id}/operations").status_code == 404
    assert found == []
    # and B still sees its own
    mine = httpx.get(f"{world.url}/v1/jobs/{world.b_jobs[0]}",
                     headers=bearer(world.keys["b_admin"]))
    assert mine.status_code == 200


def test_open_endpoints_need_no_key(world: World) -> None:
    assert httpx.get(f"{world.url}/health/live").status_code == 200
    assert httpx.get(f"{world.url}/health/ready").status_code == 200
    health = httpx.get(f"{world.url}/health").json()
    assert health["status"] == "ok" and health["queues"] == [], "no key, no tenant data"
    mine = httpx.get(f"{world.url}/health", headers=bearer(world.keys["a_read"])).json()
    assert "default" in {q["queue"] for q in mine["queues"]}
    assert httpx.get(f"{world.url}/metrics").status_code == 200
    spec = httpx.get(f"{world.url}/openapi.json").json()
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


def test_keys_are_stored_only_as_hashes(world: World) -> None:
    import sqlite3

    db = world.store.removeprefix("sqlite:///")
    with sqlite3.connect(db) as conn:
        dump = "\n".join(conn.iterdump())
    for key in world.keys.values():
        assert key not in dump and key.split("_", 2)[2] not in dump
    listed = keys_cli("list", "--json", store=world.store)
    assert listed.returncode == 0
    rows = json.loads(listed.stdout)
    assert {r["tenant"] for r in rows} == {"tenant-a", "tenant-b"}
    assert sum(1 for r in rows if r["revoked_at"]) == 1
    assert all("key" not in r and "key_hash" not in r for r in rows)
    assert keys_cli("revoke", "ffffffffffff", store=world.store).returncode == 1
    bad = keys_cli("create", "--tenant", "x", "--scope", "root", store=world.store)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_client_cli_sends_the_api_key(world: World) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "CONVEYOR_URL": world.url, "CONVEYOR_API_KEY": world.keys["a_rw"]}
    ok = subprocess.run([sys.executable, "-m", "conveyor.cli", "jobs", "show",
                         world.ids["job_a"], "--json"], capture_output=True, text=True,
                        env=env, timeout=60, check=False)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["id"] == world.ids["job_a"]
    other = subprocess.run([sys.executable, "-m", "conveyor.cli", "jobs", "show",
                            world.ids["job_a"], "--api-key", world.keys["b_admin"]],
                           capture_output=True, text=True, env=env, timeout=60, check=False)
    assert other.returncode == 1 and "no job" in other.stderr


def test_loopback_serve_is_open_but_checks_keys_that_are_sent(tmp_path: Path) -> None:
    proc = serve(tmp_path, env={"CONVEYOR_RATE_LIMIT_PER_S": "0"})
    try:
        # Ready can answer a moment before the start-up banner is written.
        wait_until(lambda: "open access for local development" in proc.log_path.read_text(),
                   10)
        r = httpx.post(f"{proc.url}/v1/jobs", json={"task": "sys.noop"})
        assert r.status_code == 202, r.text
        assert_problem(httpx.get(f"{proc.url}/v1/jobs",
                                 headers={"Authorization": "Bearer made-up"}), 401)
        store = f"sqlite:///{tmp_path / 'conveyor.db'}"
        _, key = create_key(store, "solo", "read")
        solo = httpx.get(f"{proc.url}/v1/jobs", headers=bearer(key)).json()["jobs"]
        assert solo == [], "a key acts for its own tenant, not 'default'"
        assert_problem(httpx.post(f"{proc.url}/v1/jobs", json={"task": "sys.noop"},
                                  headers=bearer(key)), 403)
    finally:
        proc.stop()


def test_listening_beyond_loopback_requires_keys(tmp_path: Path) -> None:
    proc = serve(tmp_path, "--host", "0.0.0.0", env={"CONVEYOR_RATE_LIMIT_PER_S": "0"})
    try:
        # Ready can answer a moment before the start-up banner is written.
        wait_until(lambda: "API keys required" in proc.log_path.read_text(), timeout_s=10)
        assert "open access" not in proc.log_path.read_text()
        body = assert_problem(httpx.get(f"{proc.url}/v1/jobs"), 401)
        assert "API key is required" in body["detail"]
        assert_problem(httpx.post(f"{proc.url}/v1/jobs", json={"task": "sys.noop"}), 401)
        _, key = create_key(f"sqlite:///{tmp_path / 'conveyor.db'}", "far", "read,submit")
        r = httpx.post(f"{proc.url}/v1/jobs", json={"task": "sys.noop"}, headers=bearer(key))
        assert r.status_code == 202, r.text
    finally:
        proc.stop()
