"""Rate limits on real API processes: per tenant in memory, shared through a real Redis by
two API processes, and the documented failure mode while Redis is down."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from conveyor.ratelimit.redis import RedisLimiter
from tests.support.auth import bearer, create_key
from tests.support.processes import ConveyorProcess, free_port, serve, wait_until
from tests.support.redis_server import RedisServer, shared_url

RATE_PER_S = 5
BURST = 10


def api_process(tmp: Path, store: str, name: str, env: dict[str, str]) -> ConveyorProcess:
    port = free_port()
    proc = ConveyorProcess(["api", "--port", str(port), "--store", store], tmp / f"{name}.log",
                           env=env, port=port)
    proc.start().wait_ready()
    return proc


def migrated_store(tmp: Path) -> str:
    store = f"sqlite:///{tmp / 'conveyor.db'}"
    done = subprocess.run([sys.executable, "-m", "conveyor.cli", "migrate", "--store", store],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return store


def metric(url: str, name: str) -> float:
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ConveyorProcess, str]]:
    tmp = Path(tmp_path_factory.mktemp("ratelimit"))
    env = {"CONVEYOR_AUTH": "required", "CONVEYOR_RATE_LIMIT_PER_S": str(RATE_PER_S),
           "CONVEYOR_RATE_LIMIT_BURST": str(BURST)}
    proc = serve(tmp, env=env)
    yield proc, f"sqlite:///{tmp / 'conveyor.db'}"
    proc.stop()


def test_burst_at_10x_quota_gets_429_while_another_tenant_is_served(
        limited: tuple[ConveyorProcess, str]) -> None:
    proc, store = limited
    _, noisy = create_key(store, "noisy", "read,submit")
    _, quiet = create_key(store, "quiet", "read,submit")

    def hit(key: str) -> httpx.Response:
        return httpx.get(f"{proc.url}/v1/jobs", headers=bearer(key), params={"limit": 1})

    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        noisy_answers = list(pool.map(hit, [noisy] * (10 * BURST)))
        quiet_answers = [hit(quiet) for _ in range(BURST // 2)]
    elapsed_s = time.monotonic() - started
    codes = Counter(r.status_code for r in noisy_answers)
    assert set(codes) == {200, 429}, codes
    # the burst, plus what refilled while the requests were being sent
    assert codes[200] <= BURST + RATE_PER_S * elapsed_s + 1, (codes, elapsed_s)
    refused = next(r for r in noisy_answers if r.status_code == 429)
    assert refused.headers["x-ratelimit-limit"] == str(BURST)
    assert refused.headers["x-ratelimit-remaining"] == "0"
    assert 1 <= int(refused.headers["retry-after"]) <= 2
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert [r.status_code for r in quiet_answers] == [200] * (BURST // 2)
    ok = quiet_answers[-1]
    assert int(ok.headers["x-ratelimit-remaining"]) < BURST
    assert metric(proc.url, 'conveyor_rate_limit_rejections_total{principal="tenant"}') >= 1
    # the bucket refills: after Retry-After the noisy tenant is served again
    wait_until(lambda: hit(noisy).status_code == 200, 5, 0.25)


def test_limits_are_shared_through_redis_by_two_api_processes(tmp_path: Path) -> None:
    url = shared_url()
    store = migrated_store(tmp_path)
    env = {"CONVEYOR_AUTH": "required", "CONVEYOR_RATE_LIMIT_PER_S": "1",
           "CONVEYOR_RATE_LIMIT_BURST": str(BURST), "CONVEYOR_REDIS_URL": url}
    tenant = f"shared-{uuid.uuid4().hex[:8]}"
    _, key = create_key(store, tenant, "read")
    a = api_process(tmp_path, store, "api-a", env)
    b = api_process(tmp_path, store, "api-b", env)
    try:
        codes: dict[str, Counter[int]] = {"a": Counter(), "b": Counter()}
        for i in range(2 * BURST):
            name, proc = ("a", a) if i % 2 == 0 else ("b", b)
            r = httpx.get(f"{proc.url}/v1/jobs", headers=bearer(key))
            codes[name][r.status_code] += 1
        allowed = codes["a"][200] + codes["b"][200]
        # one bucket for both: about BURST in all (each alone would have allowed 2 x BURST)
        assert BURST <= allowed <= BURST + 2, codes
        assert codes["a"][429] and codes["b"][429], codes
    finally:
        a.stop()
        b.stop()


def test_redis_stopped_mid_run_fails_open_and_recovers(tmp_path: Path) -> None:
    redis_server = RedisServer(tmp_path).start()
    store = migrated_store(tmp_path)
    env = {"CONVEYOR_AUTH": "required", "CONVEYOR_RATE_LIMIT_PER_S": "1",
           "CONVEYOR_RATE_LIMIT_BURST": "3", "CONVEYOR_REDIS_URL": redis_server.url}
    _, key = create_key(store, "t", "read")
    api = api_process(tmp_path, store, "api", env)
    try:
        get = lambda: httpx.get(f"{api.url}/v1/jobs", headers=bearer(key), timeout=5)  # noqa: E731
        assert [get().status_code for _ in range(6)].count(429) >= 2, "limited through Redis"
        assert metric(api.url, "conveyor_rate_limiter_degraded") == 0
        redis_server.kill()
        answers = [get() for _ in range(20)]
        assert [r.status_code for r in answers] == [200] * 20, "fail-open: every request served"
        assert all(r.elapsed.total_seconds() < 1.0 for r in answers), "no waiting on Redis"
        assert metric(api.url, "conveyor_rate_limiter_degraded") == 1
        assert metric(api.url,
                      'conveyor_rate_limiter_degraded_decisions_total{mode="open"}') >= 19
        assert "unreachable" in api.log_path.read_text()
        assert httpx.get(f"{api.url}/health/ready").status_code == 200
        redis_server.start()  # same port, empty
        wait_until(lambda: get().status_code == 429, 15, 0.1)
        assert metric(api.url, "conveyor_rate_limiter_degraded") == 0
        assert "reachable again" in api.log_path.read_text()
    finally:
        api.stop()
        redis_server.kill()


@pytest.mark.parametrize("mode", ["closed", "local", "open"])
async def test_failure_modes_decide_while_redis_is_unreachable(mode: str) -> None:
    """Against a port nobody listens on: each mode answers at once, as documented."""
    changes: list[bool] = []
    limiter = RedisLimiter(f"redis://127.0.0.1:{free_port()}/0", 1.0, 2, failure_mode=mode,
                           on_degraded=changes.append)
    try:
        decisions = [await limiter.acquire("tenant:x") for _ in range(4)]
    finally:
        await limiter.close()
    assert changes == [True] and all(d.degraded for d in decisions)
    allowed = [d.allowed for d in decisions]
    expected = {"closed": [False] * 4, "local": [True, True, False, False], "open": [True] * 4}
    assert allowed == expected[mode]


def test_clients_follow_retry_after(limited: tuple[ConveyorProcess, str]) -> None:
    """The Python client (and so the CLI) waits as told on 429 instead of failing; with
    retries off it reports the 429."""
    from conveyor.client import ApiError, Client

    proc, store = limited
    _, key = create_key(store, "patient", "read,submit")
    started = time.monotonic()
    with Client(proc.url, api_key=key) as client:
        ids = [client.submit("sys.noop", {})["id"] for _ in range(BURST + 5)]
    assert len(set(ids)) == BURST + 5, "each submission stored once"
    assert time.monotonic() - started >= 0.5, "it had to wait for tokens"
    with (Client(proc.url, api_key=key, rate_limit_retries=0) as impatient,
          pytest.raises(ApiError) as refused):
        for _ in range(2 * BURST):
            impatient.list(limit=1)
    assert refused.value.status == 429
