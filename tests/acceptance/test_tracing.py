"""Tracing across processes: the API's submission span is the parent of every attempt span
the worker process records. Spans are exported over real OTLP/HTTP to a collector this
test runs, and decoded from the protobuf payloads."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as trace_pb2

from tests.acceptance.test_observability import start_api, start_worker
from tests.support.processes import wait_until


class Collector:
    """A minimal OTLP/HTTP trace receiver: keeps every span with its service name."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, object]] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = trace_pb2.ExportTraceServiceRequest.FromString(body)
                for resource_spans in request.resource_spans:
                    service = next(a.value.string_value
                                   for a in resource_spans.resource.attributes
                                   if a.key == "service.name")
                    for scope in resource_spans.scope_spans:
                        collector.spans.extend((service, s) for s in scope.spans)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.end_headers()
                self.wfile.write(trace_pb2.ExportTraceServiceResponse().SerializeToString())

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_attempt_spans_are_children_of_the_submission_span(tmp_path: Path) -> None:
    collector = Collector()
    env = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
           "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_BSP_SCHEDULE_DELAY": "100",
           "CONVEYOR_RETRY_BASE_S": "0.05"}
    db = tmp_path / "traced.db"
    api = start_api(tmp_path, db, env)
    worker = start_worker(tmp_path, db, env, "worker")
    try:
        client_trace = "4bf92f3577b34da6a3ce929d0e0e4736"
        answer = httpx.post(f"{api.url}/v1/jobs", json={"operations": [
            {"task": "math.add", "args": {"a": 1, "b": 2}},
            {"task": "sys.fail", "args": {"times": 1}},
        ]}, headers={"traceparent": f"00-{client_trace}-00f067aa0ba902b7-01"})
        job_id = answer.json()["id"]

        def three_attempts() -> list | None:
            attempts = [s for _, s in collector.spans if s.name.startswith("process")]
            return attempts if len(attempts) >= 3 else None

        attempts = wait_until(three_attempts, 30)
    finally:
        worker.stop()
        api.stop()
    [(api_service, send)] = [(svc, s) for svc, s in collector.spans if s.name.startswith("send")]
    assert api_service == "conveyor-api"
    assert send.trace_id.hex() == client_trace, "the client's trace continues"
    send_attrs = {a.key: a.value for a in send.attributes}
    assert send_attrs["messaging.message.id"].string_value == job_id
    assert send_attrs["messaging.operation.type"].string_value == "send"
    worker_services = {svc for svc, s in collector.spans if s.name.startswith("process")}
    assert worker_services == {"conveyor-worker"}
    for span in attempts:
        assert span.trace_id == send.trace_id
        assert span.parent_span_id == send.span_id
        attrs = {a.key: a.value for a in span.attributes}
        assert attrs["messaging.system"].string_value == "conveyor"
        assert attrs["messaging.operation.type"].string_value == "process"
    outcomes = sorted({a.key: a.value for a in s.attributes}["conveyor.outcome"].string_value
                      for s in attempts)
    assert outcomes == ["retry", "succeeded", "succeeded"]
