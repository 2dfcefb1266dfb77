"""OpenTelemetry tracing (extra ``conveyor[otel]``), off unless ``OTEL_TRACES_EXPORTER`` is
set to ``otlp`` or ``console``; everything else follows the standard ``OTEL_*`` variables
(endpoint, protocol, service name, resource attributes, batch delays).

A submission opens a PRODUCER span (a child of the client's ``traceparent`` when the
request carries one) and stores its context with each operation. Every attempt opens a
CONSUMER span whose parent is that stored context, so one trace shows the submission and
all attempts, across the API and worker processes. Attributes follow the messaging
semantic conventions (``messaging.system``, ``messaging.operation.type``,
``messaging.destination.name``, ``messaging.message.id``).

Without the extra, or when disabled, every method is a cheap no-op.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
from collections.abc import Iterator, Mapping
from typing import Any

from ..model import Claim

log = logging.getLogger("conveyor.tracing")
SYSTEM = "conveyor"


class Tracing:
    """Spans for submissions and attempts; a no-op unless enabled."""

    def __init__(self, exporter: str = "", service_name: str = "conveyor") -> None:
        self.enabled = exporter in ("otlp", "console")
        self._provider: Any = None
        self._tracer: Any = None
        if not self.enabled:
            return
        if importlib.util.find_spec("opentelemetry.sdk") is None:
            log.warning("OTEL_TRACES_EXPORTER=%s but OpenTelemetry is not installed: "
                        "pip install 'conveyor[otel]'; tracing stays off", exporter)
            self.enabled = False
            return
        self._setup(exporter, service_name)

    def _setup(self, exporter: str, service_name: str) -> None:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

        span_exporter: Any
        if exporter == "console":
            span_exporter = ConsoleSpanExporter()
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            span_exporter = OTLPSpanExporter()
        # OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES win; otherwise name the process role.
        resource = Resource.create()
        if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
            resource = resource.merge(Resource({"service.name": service_name}))
        self._provider = TracerProvider(resource=resource)
        self._provider.add_span_processor(BatchSpanProcessor(span_exporter))
        self._tracer = self._provider.get_tracer("conveyor")

    @contextlib.contextmanager
    def submission(self, incoming: Mapping[str, str], queue_hint: str | None = None
                   ) -> Iterator[tuple[dict[str, str], Any]]:
        """A PRODUCER span around a submission. Yields the headers to store with the
        operations (the span's context) and the span (or None)."""
        if not self.enabled:
            yield {}, None
            return
        from opentelemetry import propagate
        from opentelemetry.trace import SpanKind

        parent = propagate.extract(dict(incoming))
        name = f"send {queue_hint}" if queue_hint else "send"
        with self._tracer.start_as_current_span(name, context=parent, kind=SpanKind.PRODUCER,
                                                attributes={"messaging.system": SYSTEM,
                                                            "messaging.operation.type": "send",
                                                            "messaging.operation.name": "send"}
                                                ) as span:
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            yield carrier, span

    @staticmethod
    def describe_submission(span: Any, queue: str, job_id: str, operations: int) -> None:
        if span is None:
            return
        span.update_name(f"send {queue}")
        span.set_attribute("messaging.destination.name", queue)
        span.set_attribute("messaging.message.id", job_id)
        span.set_attribute("messaging.batch.message_count", operations)

    @contextlib.contextmanager
    def attempt(self, claim: Claim, worker_id: str) -> Iterator[Any]:
        """A CONSUMER span for one attempt, child of the submission's stored context."""
        if not self.enabled:
            yield None
            return
        from opentelemetry import propagate
        from opentelemetry.trace import SpanKind

        parent = propagate.extract(dict(claim.headers))
        attributes = {
            "messaging.system": SYSTEM,
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.destination.name": claim.queue,
            "messaging.message.id": claim.op_id,
            "messaging.consumer.group.name": claim.queue,
            "conveyor.job.id": claim.job_id,
            "conveyor.task": claim.task,
            "conveyor.attempt": claim.attempt,
            "conveyor.worker.id": worker_id,
        }
        with self._tracer.start_as_current_span(f"process {claim.queue}", context=parent,
                                                kind=SpanKind.CONSUMER,
                                                attributes=attributes) as span:
            yield span

    @staticmethod
    def record_outcome(span: Any, outcome: str, error_type: str | None = None) -> None:
        if span is None:
            return
        span.set_attribute("conveyor.outcome", outcome)
        if error_type is not None:
            from opentelemetry.trace import Status, StatusCode

            span.set_attribute("error.type", error_type)
            span.set_status(Status(StatusCode.ERROR, error_type))

    def shutdown(self) -> None:
        """Flush buffered spans (called when the process stops)."""
        if self._provider is not None:
            self._provider.shutdown()
