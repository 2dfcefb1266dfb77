"""Pydantic models that describe the API in OpenAPI (``/openapi.json``, ``/docs``).

Request bodies are parsed and validated by :mod:`conveyor.submission` (one path for HTTP
and Python callers); these models document them and type the responses.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

StatusName = Literal["queued", "running", "succeeded", "failed", "cancelled"]
OpStatusName = Literal["scheduled", "queued", "running", "retrying", "succeeded", "dead",
                       "cancelled"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.:\-]{0,199}$"
"""Task and queue names (:data:`conveyor.tasks.NAME_RE`)."""


class OperationIn(Strict):
    task: str = Field(description="A registered task name, e.g. math.add (unknown: 422)",
                      pattern=NAME_PATTERN)
    args: dict[str, Any] = Field(default_factory=dict, description="Named arguments (JSON)")
    key: str | None = Field(None, max_length=256,
                            description="Ordering key: same key, same queue, one at a time")
    priority: int | None = Field(None, ge=-1000, le=1000, description="Higher runs first")
    delay_s: float | None = Field(None, ge=0, description="Seconds to wait before it is ready")
    max_attempts: int | None = Field(None, ge=1, le=100)
    timeout_s: float | None = Field(None, gt=0, description="Hard limit of one attempt")


class JobIn(Strict):
    operations: list[OperationIn] = Field(min_length=1, max_length=1000)
    queue: str | None = Field(None, pattern=NAME_PATTERN)
    metadata: dict[str, Any] | None = None


class BatchIn(Strict):
    jobs: list[JobIn] = Field(min_length=1)


class ReplayIn(Strict):
    model_config = ConfigDict(extra="forbid", strict=True)

    ids: list[str] | None = Field(None, description="Dead operation ids to replay")
    queue: str | None = None
    task: str | None = None
    job_id: str | None = None
    all: bool = Field(False, description="Replay every dead operation (of your tenant)")


class ProblemOut(BaseModel):
    """An error (RFC 9457): ``detail`` says what went wrong and where."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[Any] | None = None


class ErrorOut(BaseModel):
    type: str
    message: str
    traceback: str | None = None


class OperationOut(BaseModel):
    id: str
    job_id: str
    queue: str
    task: str
    args: dict[str, Any]
    key: str | None
    priority: int
    status: OpStatusName
    attempts: int
    max_attempts: int
    timeout_s: float | None
    result: Any = None
    error: ErrorOut | None = None
    created_at: float
    run_at: float
    started_at: float | None
    finished_at: float | None
    worker_id: str | None


class JobOut(BaseModel):
    id: str
    queue: str
    status: StatusName
    metadata: dict[str, Any]
    created_at: float
    idempotency_key: str | None
    operations: list[OperationOut]


class JobPage(BaseModel):
    jobs: list[JobOut]
    next_cursor: str | None


class BatchOut(BaseModel):
    ids: list[str]
    count: int


class OperationsOut(BaseModel):
    operations: list[OperationOut]


class DeadPage(BaseModel):
    operations: list[OperationOut]
    next_cursor: int | None


class ReplayOut(BaseModel):
    replayed: list[str]
    count: int


class QueueStatsOut(BaseModel):
    queue: str
    counts: dict[str, int]
    oldest_ready_age_s: float | None
    throughput_1m_per_s: float
    throughput_5m_per_s: float
    failed_last_5m: int


class StatsOut(BaseModel):
    queues: list[QueueStatsOut]
    transport: dict[str, Any] | None = None
    """Kafka tier: consumer lag per queue and partition, and the outbox backlog."""


class TaskOut(BaseModel):
    name: str
    queue: str
    schema_: dict[str, Any] = Field(alias="schema")
    kind: str
    max_attempts: int
    timeout_s: float | None
    priority: int
    doc: str


class TasksOut(BaseModel):
    tasks: list[TaskOut]


class WorkerOut(BaseModel):
    id: str
    host: str
    pid: int
    queues: list[str]
    concurrency: int
    version: str
    config_hash: str
    started_at: float
    last_seen_at: float
    in_flight: int
    processed: int
    status: str
    drift: bool = Field(description="Its configuration differs from another live worker "
                                    "of one of its queues")


class WorkersOut(BaseModel):
    workers: list[WorkerOut]


class HealthOut(BaseModel):
    status: str
    checks: dict[str, str] = Field(default_factory=dict)
    queues: list[QueueStatsOut] = Field(default_factory=list)
    workers_live: int | None = None
