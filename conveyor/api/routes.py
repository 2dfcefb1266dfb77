"""The v1 HTTP routes. Each is a thin adapter over :class:`conveyor.service.Service`."""

from __future__ import annotations

import contextlib
from collections import defaultdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from ..model import JobFilter, JobStatus, OpFilter, QueueStats, WorkerInfo
from ..service import Service
from . import schemas, submit
from .auth import optional_tenant, tenant_with
from .body import json_object
from .docs import V1_ERRORS, body_doc, inline_schema, problem, replay_schema
from .problems import Problem

router = APIRouter()
MAX_PAGE = 500


async def service_of(request: Request) -> Service:
    """Async on purpose: FastAPI runs a plain ``def`` dependency in a worker thread."""
    svc: Service = request.app.state.service
    return svc


ServiceDep = Annotated[Service, Depends(service_of)]
ReadTenant = Annotated[str, Depends(tenant_with("read"))]
"""The tenant of a request allowed to read (see :mod:`conveyor.api.auth`)."""
SubmitTenant = Annotated[str, Depends(tenant_with("submit"))]
AdminTenant = Annotated[str, Depends(tenant_with("admin"))]
OptionalTenant = Annotated[str | None, Depends(optional_tenant)]
v1 = APIRouter(responses=V1_ERRORS)
JOB_LINKS = {name: {"operationRef": f"#/paths/{path}",
                    "parameters": {"job_id": "$response.body#/id"}}
             for name, path in (("GetJob", "~1v1~1jobs~1{job_id}/get"),
                                ("GetOperations", "~1v1~1jobs~1{job_id}~1operations/get"),
                                ("CancelJob", "~1v1~1jobs~1{job_id}~1cancel/post"))}
"""The /v1 routes: every one needs a key (or open loopback mode) with its scope."""
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


def _body_doc(model: type[BaseModel]) -> dict[str, Any]:
    return body_doc(inline_schema(model))


@v1.post("/v1/jobs", status_code=202, response_model=schemas.JobOut, tags=["jobs"],
             openapi_extra=_body_doc(schemas.JobIn),
             responses={202: {"description": "Accepted: the job is durable", "links": JOB_LINKS},
                        200: {"description": "An idempotent repeat: the original job"},
                        409: problem("Idempotency-Key reused with another body")})
async def submit_job(
    request: Request, tenant: SubmitTenant,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> Response:
    """Submit one job: ``{"operations": [...]}`` or the shorthand ``{"task", "args"}``.
    Answers only once the job is durable."""
    # served by conveyor.api.submit's plain route; this declaration documents it
    return await submit.submit_job(request, tenant, idempotency_key)


@v1.post("/v1/jobs/batch", status_code=202, response_model=schemas.BatchOut,
             tags=["jobs"], openapi_extra=_body_doc(schemas.BatchIn))
async def submit_batch(request: Request, tenant: SubmitTenant) -> Response:
    """Submit many jobs in one transaction: all are stored, or none."""
    # served by conveyor.api.submit's plain route; this declaration documents it
    return await submit.submit_batch(request, tenant)


@v1.get("/v1/jobs", response_model=schemas.JobPage, tags=["jobs"])
async def list_jobs(
    svc: ServiceDep, tenant: ReadTenant,
    status: JobStatus | None = None, queue: str | None = None, task: str | None = None,
    limit: Limit = 50, cursor: str | None = None,
) -> dict[str, Any]:
    """Newest first. Pass ``next_cursor`` as ``cursor`` for the next page."""
    jobs = await svc.list_jobs(JobFilter(tenant=tenant, status=status, queue=queue, task=task,
                                         after=cursor, limit=limit))
    return {"jobs": [j.to_json() for j in jobs],
            "next_cursor": jobs[-1].id if len(jobs) == limit else None}


@v1.get("/v1/jobs/{job_id}", response_model=schemas.JobOut, tags=["jobs"])
async def get_job(job_id: str, svc: ServiceDep, tenant: ReadTenant) -> dict[str, Any]:
    return (await svc.get(job_id, tenant)).to_json()


@v1.get("/v1/jobs/{job_id}/operations", response_model=schemas.OperationsOut,
            tags=["jobs"])
async def get_operations(job_id: str, svc: ServiceDep, tenant: ReadTenant) -> dict[str, Any]:
    job = await svc.get(job_id, tenant)
    return {"operations": [op.to_json() for op in job.operations]}


@v1.get("/v1/jobs/{job_id}/operations/{op_id}", response_model=schemas.OperationOut,
            tags=["jobs"])
async def get_operation(job_id: str, op_id: str, svc: ServiceDep,
                        tenant: ReadTenant) -> dict[str, Any]:
    return (await svc.operation(job_id, op_id, tenant)).to_json()


@v1.post("/v1/jobs/{job_id}/cancel", response_model=schemas.JobOut, tags=["jobs"])
async def cancel_job(job_id: str, svc: ServiceDep, tenant: SubmitTenant) -> dict[str, Any]:
    """Cancel what has not finished: waiting operations at once, running ones are
    interrupted by their worker at its next heartbeat."""
    return (await svc.cancel(job_id, tenant)).to_json()


@v1.get("/v1/dlq", response_model=schemas.DeadPage, tags=["dead letters"])
async def dead_letters(
    svc: ServiceDep, tenant: ReadTenant,
    queue: str | None = None, task: str | None = None, job_id: str | None = None,
    ids: Annotated[list[str] | None, Query(
        alias="id", max_length=MAX_PAGE, description="Only these operation ids (repeatable)",
    )] = None,
    limit: Limit = 50, cursor: Annotated[int | None, Query(ge=0, le=2**62)] = None,
) -> dict[str, Any]:
    """Dead operations, oldest first. Pass ``next_cursor`` as ``cursor`` for the next page."""
    if job_id is not None:
        await svc.get(job_id, tenant)  # another tenant's job: 404, like every route
    ops = await svc.dead_letters(OpFilter(tenant=tenant, queue=queue, task=task, job_id=job_id,
                                          ids=tuple(ids) if ids else None,
                                          after_seq=cursor, limit=limit))
    return {"operations": [op.to_json() for op in ops],
            "next_cursor": ops[-1].seq if len(ops) == limit else None}


@v1.post("/v1/dlq/replay", response_model=schemas.ReplayOut, tags=["dead letters"],
             openapi_extra=body_doc(replay_schema()))
async def replay(request: Request, svc: ServiceDep, tenant: AdminTenant) -> dict[str, Any]:
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
    if parsed.job_id is not None:
        await svc.get(parsed.job_id, tenant)
    if parsed.ids:
        known = await svc.store.list_operations(
            OpFilter(tenant=tenant, ids=tuple(parsed.ids), limit=len(parsed.ids)))
        missing = sorted(set(parsed.ids) - {op.id for op in known})
        if missing:
            raise Problem(404, f"no operation {missing[0]!r}"
                          + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    ids = await svc.replay(OpFilter(
        tenant=tenant, queue=parsed.queue, task=parsed.task, job_id=parsed.job_id,
        ids=tuple(parsed.ids) if parsed.ids is not None else None,
    ))
    return {"replayed": ids, "count": len(ids)}


@v1.get("/v1/stats", response_model=schemas.StatsOut, tags=["operations"])
async def stats(svc: ServiceDep, tenant: ReadTenant) -> dict[str, Any]:
    queues = await svc.stats(tenant)
    out: dict[str, Any] = {"queues": [_stats_json(q) for q in queues]}
    transport = await svc.transport_stats([q.queue for q in queues])
    if transport is not None:
        out["transport"] = transport
    return out


@v1.get("/v1/tasks", response_model=schemas.TasksOut, tags=["operations"])
async def tasks(svc: ServiceDep, _tenant: ReadTenant) -> dict[str, Any]:
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


@v1.get("/v1/workers", response_model=schemas.WorkersOut, tags=["operations"])
async def workers(svc: ServiceDep, _tenant: ReadTenant,
                  include_gone: bool = False) -> dict[str, Any]:
    return {"workers": with_drift(await svc.store.list_workers(include_gone))}


@router.get("/health/live", tags=["health"])
async def live() -> dict[str, str]:
    """The process is up and serving."""
    return {"status": "ok"}


@router.get("/health/ready", tags=["health"],
            responses={503: problem("A dependency is unavailable")})
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


@router.get("/health", response_model=schemas.HealthOut, tags=["health"],
            responses={503: {"model": schemas.HealthOut, "description": "The store is down"}})
async def health(request: Request, svc: ServiceDep, tenant: OptionalTenant) -> Response:
    checks: dict[str, str] = {}
    try:
        await request.app.state.readiness()
        checks["store"] = "ok"
        queues = ([_stats_json(q) for q in await svc.stats(tenant)]
                  if tenant is not None else [])
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

