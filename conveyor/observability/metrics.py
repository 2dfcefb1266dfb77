"""Prometheus metrics: one :class:`Metrics` object per process, never a global registry.

Names follow Prometheus conventions (``conveyor_`` prefix, ``_total`` counters, base units
in ``_seconds``). Label values are bounded: queue and task names (tasks must be registered
to be submitted), outcome kinds, HTTP route templates and status codes; never ids.

Work done in pool processes is counted in the worker process, from the outcome it records,
so it is counted once whatever process ran it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from ..model import NewJob, QueueStats
from .histogram import FastHistogram

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DURATION_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
                      30, 60, 300)
LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
                     5, 10, 30, 60)


@dataclass(frozen=True, slots=True)
class TaskMetrics:
    """The labelled children of one (queue, task), resolved once: the per-operation hot
    path then costs a few attribute reads instead of label lookups."""

    started: Any
    in_flight: Any
    start_latency: Any
    duration: Any
    fenced: Any
    finished: dict[str, Any]


class Metrics:
    """Every metric Conveyor exports. API, worker and relay processes each hold one."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._task_metrics: dict[tuple[str, str], TaskMetrics] = {}
        self._submitted: dict[str, tuple[Counter, Counter]] = {}
        r = self.registry
        self.jobs_submitted = Counter(
            "conveyor_jobs_submitted_total", "Jobs accepted (durably stored).", ["queue"],
            registry=r)
        self.operations_submitted = Counter(
            "conveyor_operations_submitted_total", "Operations accepted (durably stored).",
            ["queue"], registry=r)
        self.operations_started = Counter(
            "conveyor_operations_started_total", "Attempts started by workers.",
            ["queue", "task"], registry=r)
        self.operations_finished = Counter(
            "conveyor_operations_finished_total",
            "Attempts whose outcome was recorded, by outcome (succeeded, retry, dead, "
            "cancelled).", ["queue", "task", "outcome"], registry=r)
        self.outcomes_fenced = Counter(
            "conveyor_outcomes_fenced_total",
            "Outcomes refused by the store because their lease was no longer current.",
            ["queue"], registry=r)
        # Observed once or twice per operation or request, on the event loop: histograms
        # without locks (see .histogram).
        self.operation_duration = FastHistogram(
            "conveyor_operation_duration_seconds", "Run time of one attempt.",
            ["queue", "task"], DURATION_BUCKETS_S, r)
        self.start_latency = FastHistogram(
            "conveyor_operation_start_latency_seconds",
            "Time from submission to the start of the first attempt.", ["queue"],
            LATENCY_BUCKETS_S, r)
        self.in_flight = Gauge(
            "conveyor_operations_in_flight",
            "Operations this worker holds leases of: running, waiting to start, or being recorded.",
            ["queue"],
            registry=r)
        self.queue_operations = Gauge(
            "conveyor_queue_operations", "Operations in the store by queue and state.",
            ["queue", "state"], registry=r)
        self.queue_oldest_ready_age = Gauge(
            "conveyor_queue_oldest_ready_age_seconds",
            "Age of the oldest operation that is ready but not started.", ["queue"],
            registry=r)
        self.http_requests = Counter(
            "conveyor_http_requests_total", "HTTP requests by route template and status.",
            ["method", "route", "status"], registry=r)
        self.http_duration = FastHistogram(
            "conveyor_http_request_duration_seconds", "HTTP request handling time.",
            ["method", "route"], LATENCY_BUCKETS_S, r)
        self.rejections = Counter(
            "conveyor_rejections_total",
            "Requests refused early, by reason (rate_limit, backpressure, body_size).",
            ["reason"], registry=r)
        self.rate_limit_rejections = Counter(
            "conveyor_rate_limit_rejections_total",
            "Requests refused with 429 by the rate limiter, by whom they were counted for "
            "(tenant: an API key; client: an anonymous client address).", ["principal"],
            registry=r)
        self.backpressure_rejections = Counter(
            "conveyor_backpressure_rejections_total",
            "Submissions refused because a queue was too deep, by level (warn: 429 for "
            "low priority; critical: 503 for all).", ["queue", "level"], registry=r)
        self.rate_limiter_degraded = Gauge(
            "conveyor_rate_limiter_degraded",
            "1 while the shared (Redis) rate limiter is unreachable and its failure mode "
            "decides, else 0.", registry=r)
        self.rate_limiter_degraded_decisions = Counter(
            "conveyor_rate_limiter_degraded_decisions_total",
            "Requests decided by the failure mode while the shared limiter was unreachable.",
            ["mode"], registry=r)

        self.consumer_lag = Gauge(
            "conveyor_consumer_lag",
            "Messages of a queue's Kafka partition its consumer group has not committed "
            "past.", ["queue", "partition"], registry=r)
        self.outbox_backlog = Gauge(
            "conveyor_outbox_backlog",
            "Outbox rows due and not yet published to Kafka, by queue.", ["queue"],
            registry=r)
        self.kafka_client_events = Counter(
            "conveyor_kafka_client_events_total",
            "Warnings and errors reported by the Kafka client library, by kind (log "
            "facility such as FAIL, or error name such as _TRANSPORT), logged or "
            "suppressed by the rate limit.", ["kind"], registry=r)
        self.transport_waiting = Gauge(
            "conveyor_transport_waiting",
            "1 while this worker waits for its transport to answer (e.g. no Kafka broker "
            "reachable at start-up), else 0.", registry=r)

    def for_task(self, queue: str, task: str) -> TaskMetrics:
        found = self._task_metrics.get((queue, task))
        if found is None:
            found = self._task_metrics[(queue, task)] = TaskMetrics(
                started=self.operations_started.labels(queue, task),
                in_flight=self.in_flight.labels(queue),
                start_latency=self.start_latency.labels(queue),
                duration=self.operation_duration.labels(queue, task),
                fenced=self.outcomes_fenced.labels(queue),
                finished={o: self.operations_finished.labels(queue, task, o)
                          for o in ("succeeded", "retry", "dead", "cancelled")},
            )
        return found

    def count_submitted(self, jobs: Sequence[NewJob]) -> None:
        """Counted per queue, one increment per queue and call (a batch of 1,000 jobs in
        one queue is two increments, not 2,000 label lookups). The labelled children are
        cached per queue: a label lookup takes a lock and builds a tuple each time."""
        per_queue: dict[str, list[int]] = {}
        for job in jobs:
            counts = per_queue.get(job.queue)
            if counts is None:
                counts = per_queue[job.queue] = [0, 0]
            counts[0] += 1
            counts[1] += len(job.operations)
        for queue, (n_jobs, n_operations) in per_queue.items():
            children = self._submitted.get(queue)
            if children is None:
                children = self._submitted[queue] = (self.jobs_submitted.labels(queue),
                                                     self.operations_submitted.labels(queue))
            children[0].inc(n_jobs)
            children[1].inc(n_operations)

    def observe_queues(self, stats: Sequence[QueueStats]) -> None:
        """Refresh the store-derived gauges (called before each scrape)."""
        for q in stats:
            for state, count in q.counts.items():
                self.queue_operations.labels(q.queue, state).set(count)
            self.queue_oldest_ready_age.labels(q.queue).set(q.oldest_ready_age_s or 0.0)

    def observe_transport(self, stats: dict[str, Any] | None) -> None:
        """Refresh the Kafka gauges from :meth:`conveyor.reconcile.TransportStats.read`."""
        if not stats:
            return
        for queue, count in stats.get("outbox_backlog", {}).items():
            self.outbox_backlog.labels(queue).set(count)
        for queue, info in stats.get("queues", {}).items():
            for part in info["partitions"]:
                self.consumer_lag.labels(queue, str(part["partition"])).set(part["lag"])

    def render(self) -> bytes:
        return generate_latest(self.registry)
