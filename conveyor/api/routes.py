"""The v1 HTTP routes. Each is a thin adapter over :class:`conveyor.service.Service`."""

from __future__ import annotations

import contextlib
from collections import defaultdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from ..errors import ValidationError
from ..model import Job, JobFilter, JobStatus, OpFilter, QueueStats, WorkerInfo
from ..service import Service
from . import schemas
from .body import json_object
from .problems import Problem

router = APIRouter()
MAX_PAGE = 500


def service_of(request: Request) -> Service:
    svc: Service = request.app.state.service
    return svc


def tenant_of(request: Request) -> str:
    """The tenant a request acts for. One tenant until authentication is configured."""
    return "default"


ServiceDep = Annotated[Service, Depends(service_of)]
TenantDep = Annotated[str, Depends(tenant_of)]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE)]


def _stats_json(q: QueueStats) -> dict[str, Any]:
    return {
        "queue": q.queue,
        "counts": q.counts,
        "oldest_ready_age_s": q.oldest_ready_age_s,
        "throughput_1m_per_s": round(q.finished_last_1m / 60.0, 3),
        "throughput_5m_per_s": round(q.finished_last_5m / 300.0, 3),
        "failed_last_5m": q.failed_last_5m,
    }


def _job_response(job: Job, status_code: int, **headers: str) -> JSONResponse:
    return JSONResponse(job.to_json(), status_code=status_code,
                        headers={"Location": f"/v1/jobs/{job.id}", **headers})


def _body_doc(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    defs = schema.pop("$defs", {})
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": {**schema, **({"$defs": defs} if defs else {})}}}}}


@router.post("/v1/jobs", status_code=202, response_model=schemas.JobOut, tags=["jobs"],
             openapi_extra=_body_doc(schemas.JobIn),
             responses={200: {"description": "An idempotent repeat: the original job"},
                        409: {"description": "Idempotency-Key reused with another body"},
                        413: {"description": "Body too large"},
                        422: {"description": "Unknown task or invalid arguments"}})
async def submit_job(
    request: Request, svc: ServiceDep, tenant: TenantDep,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> Response:
    """Submit one job: ``{"operations": [...]}`` or the shorthand ``{"task", "args"}``.
    Answers only once the job is durable."""
    limits = svc.limits
    body = await json_object(request, limits.max_body_bytes, limits.max_json_depth)
    tracing = request.app.state.tracing
    with tracing.submission(request.headers) as (headers, span):
        job, created = await svc.submit(body, tenant=tenant, idempotency_key=idempotency_key,
                                        headers=headers)
        tracing.describe_submission(span, job.queue, job.id, len(job.operations))
    if created:
        return _job_response(job, 202)
    return _job_response(job, 200, **{"Idempotent-Replayed": "true"})


@router.post("/v1/jobs/batch", status_code=202, response_model=schemas.BatchOut,
             tags=["jobs"], openapi_extra=_body_doc(schemas.BatchIn))
async def submit_batch(request: Request, svc: ServiceDep, tenant: TenantDep) -> Response:
    """Submit many jobs in one transaction: all are stored, or none."""
    limits = svc.limits
    body = await json_object(request, limits.max_batch_body_bytes, limits.max_json_depth + 2)
    jobs = body.get("jobs")
    if set(body) - {"jobs"} or not isinstance(jobs, list):
        raise ValidationError("expected {\"jobs\": [...]}")
    tracing = request.app.state.tracing
    with tracing.submission(request.headers) as (headers, span):
        ids = await svc.submit_many(jobs, tenant=tenant, headers=headers)
        if ids:
            tracing.describe_submission(span, "batch", ids[0], len(ids))
    return JSONResponse({"ids": ids, "count": len(ids)}, status_code=202)


@router.get("/v1/jobs", response_model=schemas.JobPage, tags=["jobs"])
async def list_jobs(
    svc: ServiceDep, tenant: TenantDep,
    status: JobStatus | None = None, queue: str | None = None, task: str | None = None,
    limit: Limit = 50, cursor: str | None = None,
) -> dict[str, Any]:
    """Newest first. Pass ``next_cursor`` as ``cursor`` for the next page."""
    jobs = await svc.list_jobs(JobFilter(tenant=tenant, status=status, queue=queue, task=task,
                                         after=cursor, limit=limit))
    return {"jobs": [j.to_json() for j in jobs],
            "next_cursor": jobs[-1].id if len(jobs) == limit else None}


@router.get("/v1/jobs/{job_id}", response_model=schemas.JobOut, tags=["jobs"])
async def get_job(job_id: str, svc: ServiceDep, tenant: TenantDep) -> dict[str, Any]:
    return (await svc.get(job_id, tenant)).to_json()


@router.get("/v1/jobs/{job_id}/operations", response_model=schemas.OperationsOut,
            tags=["jobs"])
async def get_operations(job_id: str, svc: ServiceDep, tenant: TenantDep) -> dict[str, Any]:
    job = await svc.get(job_id, tenant)
    return {"operations": [op.to_json() for op in job.operations]}


@router.get("/v1/jobs/{job_id}/operations/{op_id}", response_model=schemas.OperationOut,
            tags=["jobs"])
async def get_operation(job_id: str, op_id: str, svc: ServiceDep,
                        tenant: TenantDep) -> dict[str, Any]:
    return (await svc.operation(job_id, op_id, tenant)).to_json()


@router.post("/v1/jobs/{job_id}/cancel", response_model=schemas.JobOut, tags=["jobs"])
async def cancel_job(job_id: str, svc: ServiceDep, tenant: TenantDep) -> dict[str, Any]:
    """Cancel what has not finished: waiting operations at once, running ones are
    interrupted by their worker at its next heartbeat."""
    return (await svc.cancel(job_id, tenant)).to_json()


@router.get("/v1/dlq", response_model=schemas.DeadPage, tags=["dead letters"])
async def dead_letters(
    svc: ServiceDep, tenant: TenantDep,
    queue: str | None = None, task: str | None = None, job_id: str | None = None,
    ids: Annotated[list[str] | None, Query(
        alias="id", max_length=MAX_PAGE, description="Only these operation ids (repeatable)",
    )] = None,
    limit: Limit = 50, cursor: Annotated[int | None, Query(ge=0)] = None,
) -> dict[str, Any]:
    """Dead operations, oldest first. Pass ``next_cursor`` as ``cursor`` for the next page."""
    ops = await svc.dead_letters(OpFilter(tenant=tenant, queue=queue, task=task, job_id=job_id,
                                          ids=tuple(ids) if ids else None,
                                          after_seq=cursor, limit=limit))
    return {"operations": [op.to_json() for op in ops],
            "next_cursor": ops[-1].seq if len(ops) == limit else None}


@router.post("/v1/dlq/replay", response_model=schemas.ReplayOut, tags=["dead letters"],
             openapi_extra=_body_doc(schemas.ReplayIn))
async def replay(request: Request, svc: ServiceDep, tenant: TenantDep) -> dict[str, Any]:
    """Replay dead operations by ``ids`` or by filter (``queue``, ``task``, ``job_id``);
    ``{"all": true}`` replays every one. An empty request replays nothing (422)."""
    body = await json_object(request, 1024 * 1024, 8)
    try:
        parsed = schemas.ReplayIn.model_validate(body)
    except PydanticValidationError as exc:
        raise Problem(422, "; ".join(e["msg"] for e in exc.errors())) from None
    has_filter = parsed.ids is not None or parsed.queue or parsed.task or parsed.job_id
    if not has_filter and not parsed.all:
        raise Problem(422, "say what to replay: ids, queue, task, job_id, or all: true")
    ids = await svc.replay(OpFilter(
        tenant=tenant, queue=parsed.queue, task=parsed.task, job_id=parsed.job_id,
        ids=tuple(parsed.ids) if parsed.ids is not None else None,
    ))
    return {"replayed": ids, "count": len(ids)}


@router.get("/v1/stats", response_model=schemas.StatsOut, tags=["operations"])
async def stats(svc: ServiceDep, tenant: TenantDep) -> dict[str, Any]:
    queues = await svc.stats(tenant)
    out: dict[str, Any] = {"queues": [_stats_json(q) for q in queues]}
    transport = await svc.transport_stats([q.queue for q in queues])
    if transport is not None:
        out["transport"] = transport
    return out


@router.get("/v1/tasks", response_model=schemas.TasksOut, tags=["operations"])
async def tasks(svc: ServiceDep) -> dict[str, Any]:
    return {"tasks": [t.to_json() for t in await svc.tasks()]}


def with_drift(workers: list[WorkerInfo]) -> list[dict[str, Any]]:
    """Flag workers whose configuration hash differs from another live worker's of a
    queue they share."""
    hashes: dict[str, set[str]] = defaultdict(set)
    for w in workers:
        if w.status == "live":
            for q in w.queues:
                hashes[q].add(w.config_hash)
    return [{**w.to_json(), "drift": any(len(hashes[q]) > 1 for q in w.queues)}
            for w in workers]


@router.get("/v1/workers", response_model=schemas.WorkersOut, tags=["operations"])
async def workers(svc: ServiceDep, include_gone: bool = False) -> dict[str, Any]:
    return {"workers": with_drift(await svc.store.list_workers(include_gone))}


@router.get("/health/live", tags=["health"])
async def live() -> dict[str, str]:
    """The process is up and serving."""
    return {"status": "ok"}


@router.get("/health/ready", tags=["health"],
            responses={503: {"description": "A dependency is unavailable"}})
async def ready(request: Request) -> dict[str, Any]:
    """Ready when the store (and transport) answer and the schema is current; otherwise a
    503 problem whose detail names the failing dependency and why."""
    try:
        await request.app.state.readiness()
    except Exception as exc:
        reason = str(exc) or type(exc).__name__
        raise Problem(503, f"not ready: {type(exc).__name__}: {reason}",
                      headers={"Retry-After": "1"}) from None
    return {"status": "ok"}


@router.get("/health", response_model=schemas.HealthOut, tags=["health"])
async def health(request: Request, svc: ServiceDep, tenant: TenantDep) -> Response:
    checks: dict[str, str] = {}
    try:
        await request.app.state.readiness()
        checks["store"] = "ok"
        queues = [_stats_json(q) for q in await svc.stats(tenant)]
        live_workers = len(await svc.store.list_workers())
    except Exception as exc:
        checks["store"] = f"unavailable: {exc}"
        return JSONResponse({"status": "unavailable", "checks": checks}, status_code=503)
    return JSONResponse({"status": "ok", "checks": checks, "queues": queues,
                         "workers_live": live_workers})


@router.get("/metrics", tags=["health"], response_class=Response)
async def metrics(request: Request, svc: ServiceDep) -> Response:
    """Prometheus text format."""
    from ..observability.metrics import CONTENT_TYPE

    registry = request.app.state.metrics
    with contextlib.suppress(Exception):
        queues = await svc.stats(None)
        registry.observe_queues(queues)
        registry.observe_transport(await svc.transport_stats([q.queue for q in queues]))
    return Response(registry.render(), media_type=CONTENT_TYPE)

