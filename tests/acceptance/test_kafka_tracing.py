"""Tracing on the Kafka tier: the trace context travels in the Kafka message headers, and
the worker's attempt spans are children of the API's submission span."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx

from tests.acceptance.test_tracing import Collector
from tests.support.fleet import kafka_env, migrate, start_api, start_worker
from tests.support.kafka import bootstrap, unique_prefix
from tests.support.postgres import create_database, drop_database
from tests.support.processes import ConveyorProcess, wait_until


def _headers_of_first_message(address: str, topic: str) -> dict[str, str]:
    from confluent_kafka import Consumer

    consumer = Consumer({"bootstrap.servers": address, "group.id": f"peek-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    found: list[dict[str, str]] = []
    try:
        def one() -> bool:
            for message in consumer.consume(10, 0.5):
                if message.error() is None:
                    found.append({k: v.decode() for k, v in message.headers() or []})
            return bool(found)

        wait_until(one, 60, 0)
    finally:
        consumer.close()
    return found[0]


def test_trace_context_in_kafka_headers(tmp_path: Path) -> None:
    address = bootstrap()
    collector = Collector()
    prefix = unique_prefix("trace")
    env = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
           "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_BSP_SCHEDULE_DELAY": "100",
           **kafka_env(address, prefix, 2)}
    url = create_database("conveyor_kafka_trace")
    procs: list[ConveyorProcess] = []
    try:
        assert migrate(url, tmp_path).returncode == 0
        api = start_api(url, tmp_path, "api", env)
        procs.append(api)
        procs.append(start_worker(url, tmp_path, "worker", env))
        client_trace = "4bf92f3577b34da6a3ce929d0e0e4736"
        answer = httpx.post(f"{api.url}/v1/jobs", json={"task": "math.add",
                                                        "args": {"a": 1, "b": 2}},
                            headers={"traceparent": f"00-{client_trace}-00f067aa0ba902b7-01"})
        assert answer.status_code == 202

        def attempt() -> list | None:
            found = [s for _, s in collector.spans if s.name.startswith("process")]
            return found or None

        [span] = wait_until(attempt, 60)
        headers = _headers_of_first_message(address, f"{prefix}default")
    finally:
        for p in procs:
            p.stop()
        drop_database(url)
    [send] = [s for svc, s in collector.spans if s.name.startswith("send")]
    assert headers["traceparent"].split("-")[1:3] == [client_trace, send.span_id.hex()]
    assert span.trace_id == send.trace_id and span.parent_span_id == send.span_id
