"""Kafka-tier processes started before their broker wait for it instead of exiting: the
worker and the relay stay alive (live 200, ready 503 with the reason), log a bounded
number of lines while they wait, start consuming once the broker appears, and stop
cleanly on SIGTERM while still waiting. The broker is a private one (its own
``CONVEYOR_SERVICES_DIR``), killed and restarted on the same port; nobody else uses it."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.support.fleet import kafka_env, migrate, query, start_api
from tests.support.kafka import PrivateBroker, bootstrap, unique_prefix
from tests.support.postgres import create_database, drop_database
from tests.support.processes import ConveyorProcess, free_port, wait_until

pytestmark = pytest.mark.slow


def _probe(port: int, path: str) -> tuple[int, dict[str, object]]:
    try:
        answer = httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5)
    except httpx.HTTPError:
        return 0, {}
    return answer.status_code, answer.json()


def _start(command: str, url: str, tmp: Path, name: str, env: dict[str, str],
           port: int) -> ConveyorProcess:
    extra = ["--tasks", "conveyor_test_tasks"] if command == "worker" else []
    return ConveyorProcess([command, "--store", url, "--metrics-port", str(port), *extra],
                           tmp / f"{name}.log", env=env).start()


def _kafka_lines(log: Path) -> list[str]:
    """The log lines about Kafka (the processes log JSON lines: not a terminal)."""
    found = []
    for line in log.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if str(record.get("logger", "")).startswith("conveyor.kafka"):
            found.append(line)
    return found


def test_worker_and_relay_wait_for_a_broker_that_appears_later(tmp_path: Path) -> None:
    bootstrap()  # skip locally / fail in CI without Kafka, like every Kafka test
    broker = PrivateBroker(tmp_path / "services")
    url = create_database("conveyor_kafka_startup")
    procs: dict[str, ConveyorProcess] = {}
    try:
        address = broker.start()
        broker.kill()  # its port is known and nothing listens there now
        env = kafka_env(address, unique_prefix("startup"), 2)
        assert migrate(url, tmp_path).returncode == 0
        ports = {"worker": free_port(), "relay": free_port()}
        for name in ports:
            procs[name] = _start(name, url, tmp_path, name, env, ports[name])

        for port in ports.values():  # alive, not ready, and saying why
            wait_until(lambda p=port: _probe(p, "/health/ready")[0] == 503, 60, 0.2)
            assert _probe(port, "/health/live")[0] == 200
        # The reason appears once the first connection attempt has failed.
        wait_until(lambda: "waiting for Kafka" in str(_probe(ports["worker"], "/health/ready")[1]),
                   30, 0.2)
        status, body = _probe(ports["worker"], "/health/ready")
        assert status == 503 and "waiting for Kafka" in str(body["detail"]), body
        assert address in str(body["detail"])
        wait_until(lambda: sum("waiting for Kafka at" in line for line in
                               _kafka_lines(tmp_path / "worker.log")) >= 3, 60, 0.2)
        waiting_lines = len(_kafka_lines(tmp_path / "worker.log"))
        outage_metrics = httpx.get(f"http://127.0.0.1:{ports['worker']}/metrics").text
        assert "conveyor_transport_waiting 1.0" in outage_metrics
        assert 'conveyor_kafka_client_events_total{kind="' in outage_metrics

        # Heartbeats run while it waits: the registry keeps it live, never gone.
        [first] = query(url, "SELECT last_seen_at FROM workers")
        wait_until(lambda: query(url, "SELECT last_seen_at FROM workers")[0]["last_seen_at"]
                   > first["last_seen_at"], 30, 0.2)
        assert [r["status"] for r in query(url, "SELECT status FROM workers")] == ["live"]
        assert "conveyor_transport_waiting 1.0" in httpx.get(
            f"http://127.0.0.1:{ports['worker']}/metrics").text

        broker.restart()
        for port in ports.values():
            wait_until(lambda p=port: _probe(p, "/health/ready")[0] == 200, 90, 0.2)
        for proc in procs.values():
            assert proc.proc is not None and proc.proc.poll() is None
        assert "conveyor_transport_waiting 0.0" in httpx.get(
            f"http://127.0.0.1:{ports['worker']}/metrics").text

        procs["api"] = start_api(url, tmp_path, "api", env)
        job = httpx.post(f"{procs['api'].url}/v1/jobs", timeout=10,
                         json={"task": "math.add", "args": {"a": 2, "b": 3}}).json()

        def finished() -> dict[str, object] | None:
            found = httpx.get(f"{procs['api'].url}/v1/jobs/{job['id']}", timeout=5).json()
            return found if found["status"] in ("succeeded", "failed") else None

        done = wait_until(finished, 90, 0.2)
        assert done["status"] == "succeeded"
        assert done["operations"][0]["result"] == 5  # type: ignore[index]

        # One line per attempt and a few rate-limited client lines: no flood.
        assert waiting_lines <= 20, "\n".join(_kafka_lines(tmp_path / "worker.log"))
    finally:
        for proc in procs.values():
            if proc.proc is not None and proc.proc.poll() is None:
                proc.stop()
        broker.stop()
        drop_database(url)


def _submitted(api: ConveyorProcess) -> bool:
    try:
        return httpx.post(f"{api.url}/v1/jobs", json={"task": "math.add", "args": {
            "a": 1, "b": 2}}, timeout=5).status_code == 202
    except httpx.HTTPError:
        return False


def test_worker_and_relay_waiting_for_their_broker_stop_on_sigterm(tmp_path: Path) -> None:
    bootstrap()
    url = create_database("conveyor_kafka_startup_stop")
    nowhere = f"127.0.0.1:{free_port()}"  # nothing listens there
    env = kafka_env(nowhere, unique_prefix())
    assert migrate(url, tmp_path).returncode == 0
    api_port = free_port()
    # The API accepts work without a broker (it goes to the outbox): the relay has rows
    # to publish and keeps trying.
    api = ConveyorProcess(["api", "--store", url, "--port", str(api_port), "--no-relay"],
                          tmp_path / "api.log", env=env, port=api_port).start()
    procs = {"api": api}
    try:
        wait_until(lambda: _submitted(api), 60, 0.2)
        for name in ("worker", "relay"):
            procs[name] = _start(name, url, tmp_path, name, env, free_port())
        wait_until(lambda: "waiting for Kafka at" in (tmp_path / "worker.log").read_text(),
                   60, 0.2)
        wait_until(lambda: sum("does not answer" in line for line in
                               (tmp_path / "relay.log").read_text().splitlines()) >= 2,
                   60, 0.2)
        for name in ("worker", "relay"):
            proc = procs[name].proc
            assert proc is not None and proc.poll() is None, name
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0, (tmp_path / f"{name}.log").read_text()
            assert time.monotonic() - started < 15, name
    finally:
        for proc in procs.values():
            if proc.proc is not None and proc.proc.poll() is None:
                proc.kill9()
        drop_database(url)
