"""The memory store's rows: operations and jobs as the store keeps them."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from ...model import (
    JSON,
    Claim,
    ErrorInfo,
    Job,
    JobStatus,
    Operation,
    OpStatus,
    job_status,
)


def json_copy(value: JSON) -> JSON:
    """What a database would give back: JSON text parsed again (tuples become lists...)."""
    return json.loads(json.dumps(value))


@dataclass
class OpRow:
    id: str
    job_id: str
    seq: int
    tenant: str
    queue: str
    task: str
    args: dict[str, JSON]
    key: str | None
    priority: int
    status: OpStatus
    max_attempts: int
    timeout_s: float | None
    created_at: float
    run_at: float
    headers: dict[str, str]
    attempts: int = 0
    result: JSON = None
    error: ErrorInfo | None = None
    started_at: float | None = None
    finished_at: float | None = None
    worker_id: str | None = None
    lease_token: int = 0
    lease_expires_at: float | None = None
    cancel_requested: bool = False

    def held_by(self, lease_token: int) -> bool:
        return self.status is OpStatus.RUNNING and self.lease_token == lease_token

    def finish(self, status: OpStatus, now: float) -> None:
        self.status = status
        self.finished_at = now
        self.lease_expires_at = None

    def to_operation(self) -> Operation:
        return Operation(
            id=self.id, job_id=self.job_id, seq=self.seq, queue=self.queue, task=self.task,
            args=copy.deepcopy(self.args), key=self.key, priority=self.priority,
            status=self.status, attempts=self.attempts, max_attempts=self.max_attempts,
            timeout_s=self.timeout_s, result=copy.deepcopy(self.result), error=self.error,
            created_at=self.created_at, run_at=self.run_at, started_at=self.started_at,
            finished_at=self.finished_at, worker_id=self.worker_id,
            cancel_requested=self.cancel_requested,
        )

    def to_claim(self) -> Claim:
        return Claim(
            op_id=self.id, job_id=self.job_id, queue=self.queue, task=self.task,
            args=copy.deepcopy(self.args), key=self.key, attempt=self.attempts,
            max_attempts=self.max_attempts, timeout_s=self.timeout_s,
            lease_token=self.lease_token, created_at=self.created_at,
            headers=dict(self.headers),
        )


@dataclass
class JobRow:
    id: str
    tenant: str
    queue: str
    metadata: dict[str, JSON]
    idempotency_key: str | None
    request_hash: str | None
    created_at: float
    ops: list[OpRow] = field(default_factory=list)

    def status(self) -> JobStatus:
        started = any(op.attempts > 0 or op.started_at is not None for op in self.ops)
        return job_status([op.status for op in self.ops], started)

    def to_job(self) -> Job:
        return Job(
            id=self.id, queue=self.queue, tenant=self.tenant, status=self.status(),
            metadata=copy.deepcopy(self.metadata), created_at=self.created_at,
            operations=tuple(op.to_operation() for op in self.ops),
            idempotency_key=self.idempotency_key,
        )


def claim_order(ops: Iterable[OpRow]) -> list[OpRow]:
    return sorted(ops, key=lambda op: (-op.priority, op.seq))
