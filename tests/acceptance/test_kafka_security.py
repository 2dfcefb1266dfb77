"""Kafka client properties reach every client: against a private broker whose second
listener requires SASL/PLAIN, an API with its relay and a worker given the right
credentials (``--kafka-option`` and a properties file) run a job; a worker with a wrong
password stays alive but not ready, says why, and never logs the password."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.support.fleet import kafka_env, migrate
from tests.support.kafka import PrivateBroker, bootstrap, unique_prefix
from tests.support.postgres import create_database, drop_database
from tests.support.processes import ConveyorProcess, free_port, wait_until

pytestmark = pytest.mark.slow

PASSWORD = "s3cret-Pa55word"
WRONG = "wrong-Pa55word"


def _sasl_broker(tmp: Path) -> tuple[PrivateBroker, str]:
    """A private broker with a SASL_PLAINTEXT listener (user ``conveyor``); its address."""
    sasl_port = free_port()
    extra = tmp / "sasl.properties"
    extra.write_text(
        "listeners=PLAINTEXT://127.0.0.1:@PORT@,CONTROLLER://127.0.0.1:@CONTROLLER_PORT@,"
        f"SASL://127.0.0.1:{sasl_port}\n"
        f"advertised.listeners=PLAINTEXT://127.0.0.1:@PORT@,SASL://127.0.0.1:{sasl_port}\n"
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,"
        "SASL:SASL_PLAINTEXT\n"
        "sasl.enabled.mechanisms=PLAIN\n"
        "listener.name.sasl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain."
        f'PlainLoginModule required user_conveyor="{PASSWORD}";\n')
    broker = PrivateBroker(tmp / "services", extra_properties=extra)
    broker.start()
    return broker, f"127.0.0.1:{sasl_port}"


def _ready(port: int) -> tuple[int, str]:
    try:
        answer = httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=10)
    except httpx.HTTPError:
        return 0, ""
    return answer.status_code, answer.text


def test_sasl_credentials_reach_every_client(tmp_path: Path) -> None:
    bootstrap()  # skip locally / fail in CI without Kafka, like every Kafka test
    url = create_database("conveyor_kafka_sasl")
    broker, address = _sasl_broker(tmp_path)
    procs: list[ConveyorProcess] = []
    try:
        assert migrate(url, tmp_path).returncode == 0
        good = tmp_path / "client.properties"
        good.write_text(f"sasl.username=conveyor\nsasl.password={PASSWORD}\n")
        env = {**kafka_env(address, unique_prefix("sasl"), 2),
               "CONVEYOR_KAFKA_OPTIONS_FILE": str(good)}
        sasl = ["--kafka-option", "security.protocol=SASL_PLAINTEXT",
                "--kafka-option", "sasl.mechanism=PLAIN"]
        api_port, worker_port, wrong_port = free_port(), free_port(), free_port()
        api = ConveyorProcess(["api", "--store", url, "--port", str(api_port), "--relay",
                               *sasl], tmp_path / "api.log", env=env, port=api_port)
        worker = ConveyorProcess(["worker", "--store", url, "--metrics-port",
                                  str(worker_port), *sasl], tmp_path / "worker.log", env=env)
        bad = tmp_path / "wrong.properties"
        bad.write_text(f"sasl.username=conveyor\nsasl.password={WRONG}\n")
        wrong = ConveyorProcess(
            ["worker", "--store", url, "--metrics-port", str(wrong_port), *sasl],
            tmp_path / "wrong.log", env={**env, "CONVEYOR_KAFKA_OPTIONS_FILE": str(bad)})
        procs += [api.start(), worker.start(), wrong.start()]
        api.wait_ready(90)
        wait_until(lambda: _ready(worker_port)[0] == 200, 90, 0.2)

        job = httpx.post(f"{api.url}/v1/jobs", timeout=10,
                         json={"task": "math.mul", "args": {"a": 6, "b": 7}}).json()
        done = wait_until(lambda: (j := httpx.get(f"{api.url}/v1/jobs/{job['id']}",
                                                  timeout=5).json())["status"]
                          in ("succeeded", "failed") and j, 90, 0.2)
        assert done["status"] == "succeeded" and done["operations"][0]["result"] == 42

        # Alive, not ready, and saying why (once it tried: "not started" before that).
        wait_until(lambda: (r := _ready(wrong_port))[0] == 503 and "waiting for Kafka"
                   in r[1] and "authentication failed" in r[1].lower(), 60, 0.2)
        assert wrong.proc is not None and wrong.proc.poll() is None
    finally:
        for proc in procs:
            if proc.proc is not None and proc.proc.poll() is None:
                proc.stop()
        broker.stop()
        drop_database(url)
    for log in ("api.log", "worker.log", "wrong.log"):
        text = (tmp_path / log).read_text()
        assert PASSWORD not in text and WRONG not in text, log
