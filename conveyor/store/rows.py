"""Turning stored rows into model objects; shared by the SQL adapters (pure code)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from ..keys import ApiKey
from ..model import (
    Claim,
    ErrorInfo,
    Job,
    JobStatus,
    NewJob,
    Operation,
    OpStatus,
    TaskInfo,
    WorkerInfo,
    job_status,
)

Row = Any
"""A row from any driver that can be indexed by column name (sqlite3.Row, dict rows)."""

JOB_STATUS_OF_SINGLE = {
    op.value: job_status([op], started=True).value
    for op in (OpStatus.SUCCEEDED, OpStatus.DEAD, OpStatus.CANCELLED, OpStatus.RETRYING)}
"""The status of a job of one operation, by the status an outcome left the operation in:
the stores set it directly instead of deriving it from the job's operations."""


def _json(value: Any, default: Any = None) -> Any:
    if value is None:
        return default
    if value == "{}":  # the common empty args and headers: no parser call
        return {}
    if isinstance(value, (str, bytes, bytearray)):
        return json.loads(value)
    return value  # already decoded by the driver (e.g. PostgreSQL jsonb)


def _time(value: Any) -> float | None:
    if value is None:
        return None
    if hasattr(value, "timestamp"):
        return float(value.timestamp())
    return float(value)


def operation(row: Row) -> Operation:
    return Operation(
        id=str(row["id"]),
        job_id=str(row["job_id"]),
        seq=int(row["seq"]),
        queue=row["queue"],
        task=row["task"],
        args=_json(row["args"], {}),
        key=row["key"],
        priority=int(row["priority"]),
        status=OpStatus(row["status"]),
        attempts=int(row["attempts"]),
        max_attempts=int(row["max_attempts"]),
        timeout_s=row["timeout_s"],
        result=_json(row["result"]),
        error=ErrorInfo.from_json(_json(row["error"])),
        created_at=_time(row["created_at"]) or 0.0,
        run_at=_time(row["run_at"]) or 0.0,
        started_at=_time(row["started_at"]),
        finished_at=_time(row["finished_at"]),
        worker_id=row["worker_id"],
        cancel_requested=bool(row["cancel_requested"]),
    )


def jobs(job_rows: Iterable[Row], op_rows: Iterable[Row]) -> list[Job]:
    """Assemble jobs from their rows and their operations' rows (any order)."""
    ops: dict[str, list[Operation]] = {}
    for row in op_rows:
        op = operation(row)
        ops.setdefault(op.job_id, []).append(op)
    out = []
    for row in job_rows:
        job_ops = sorted(ops.get(str(row["id"]), []), key=lambda o: o.seq)
        out.append(
            Job(
                id=str(row["id"]),
                queue=row["queue"],
                tenant=row["tenant"],
                status=JobStatus(row["status"]),
                metadata=_json(row["metadata"], {}),
                created_at=_time(row["created_at"]) or 0.0,
                operations=tuple(job_ops),
                idempotency_key=row["idempotency_key"],
            )
        )
    return out


def created_job(job: NewJob, op_values: Sequence[dict[str, Any]], seqs: Sequence[int],
                now: float) -> Job:
    """``job`` as its inserts have just stored it: ``op_values`` are the values its
    operations were inserted with (in order, as ``insert_operation`` takes them), ``seqs``
    the submission order they got. For an adapter that builds the answer instead of having
    its inserts return the rows (an insert's stored values are its inputs and the
    columns' defaults, which are here)."""
    operations = tuple(
        Operation(
            id=values["id"], job_id=job.id, seq=seq, queue=job.queue, task=op.task,
            args=op.args, key=op.key, priority=op.priority,
            status=OpStatus(values["status"]), attempts=0, max_attempts=op.max_attempts,
            timeout_s=op.timeout_s, result=None, error=None, created_at=now,
            run_at=values["run_at"], started_at=None, finished_at=None)
        for op, values, seq in zip(job.operations, op_values, seqs, strict=True))
    return Job(id=job.id, queue=job.queue, tenant=job.tenant, status=JobStatus.QUEUED,
               metadata=job.metadata, created_at=now, operations=operations,
               idempotency_key=job.idempotency_key)


CLAIM_COLUMNS = ("id", "job_id", "queue", "task", "args", "key", "attempts", "max_attempts",
                 "timeout_s", "lease_token", "created_at", "headers", "priority", "seq")
"""What a claiming statement returns, in this order, for :func:`claims_of_tuples`."""


def claims_of_tuples(found: Iterable[Sequence[Any]]) -> list[Claim]:
    """Claims by priority (high first), then submission order, from plain tuples in
    :data:`CLAIM_COLUMNS` order: a driver's cheapest rows, read by position instead of
    looked up by name a dozen times per claim (sqlite3.Row compares the name with each
    column's in turn)."""
    ordered = sorted(found, key=lambda r: (-r[12], r[13]))
    return [Claim(str(r[0]), str(r[1]), r[2], r[3], _json(r[4], {}), r[5], int(r[6]), int(r[7]),
                  r[8], int(r[9]), _time(r[10]) or 0.0, _json(r[11], {}))
            for r in ordered]


def claims_in_order(found: Iterable[Row]) -> list[Claim]:
    """Claims by priority (high first), then submission order, from rows read by column
    name (dict rows)."""
    return claims_of_tuples([tuple(r[c] for c in CLAIM_COLUMNS) for r in found])


def task_info(row: Row) -> TaskInfo:
    return TaskInfo(
        name=row["name"],
        queue=row["queue"],
        schema=_json(row["schema"], {}),
        kind=row["kind"],
        max_attempts=int(row["max_attempts"]),
        timeout_s=row["timeout_s"],
        priority=int(row["priority"]),
        doc=row["doc"] or "",
    )


def worker_info(row: Row) -> WorkerInfo:
    return WorkerInfo(
        id=row["id"],
        host=row["host"],
        pid=int(row["pid"]),
        queues=tuple(_json(row["queues"], [])),
        concurrency=int(row["concurrency"]),
        version=row["version"],
        config_hash=row["config_hash"],
        started_at=_time(row["started_at"]) or 0.0,
        last_seen_at=_time(row["last_seen_at"]) or 0.0,
        in_flight=int(row["in_flight"]),
        processed=int(row["processed"]),
        status=row["status"],
    )


def api_key(row: Row) -> ApiKey:
    return ApiKey(
        id=row["id"],
        tenant=row["tenant"],
        scopes=tuple(s for s in row["scopes"].split(",") if s),
        key_hash=row["key_hash"],
        created_at=_time(row["created_at"]) or 0.0,
        revoked_at=_time(row["revoked_at"]),
        name=row["name"] or "",
    )
