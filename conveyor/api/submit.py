"""The submission routes, ``POST /v1/jobs`` and ``POST /v1/jobs/batch``: the API's hot path.

They are served by plain Starlette routes that :func:`conveyor.api.app.create_app` puts
ahead of the FastAPI ones. FastAPI's dependency solving and route matching cost about as
much CPU as the submission itself (measured over ASGI on the memory store: 270-300 µs per
request through FastAPI, 160-175 µs through these routes). The FastAPI declarations in
:mod:`conveyor.api.routes` stay: they document both routes in the OpenAPI schema and run
the same functions, so both paths answer alike (authentication, rate limits, problem+json
errors through the app's handlers, metrics by route template).
"""

from __future__ import annotations

import json

from fastapi import Request, Response
from fastapi.responses import JSONResponse
from starlette.routing import BaseRoute, Match, Route
from starlette.types import Scope

from ..errors import ValidationError
from ..model import Job
from ..service import Service
from .auth import authorize
from .body import json_object

_encode_json = json.JSONEncoder(ensure_ascii=False, allow_nan=False,
                                separators=(",", ":")).encode
"""What :class:`JSONResponse` renders, from one encoder (``json.dumps`` with options builds
a new one per call)."""


def _job_response(job: Job, status_code: int, **headers: str) -> Response:
    return Response(_encode_json(job.to_json()).encode(), status_code=status_code,
                    media_type="application/json",
                    headers={"Location": f"/v1/jobs/{job.id}", **headers})


async def submit_job(request: Request, tenant: str, idempotency_key: str | None) -> Response:
    """Submit one job: ``{"operations": [...]}`` or the shorthand ``{"task", "args"}``.
    Answers only once the job is durable: 202, or 200 for an idempotent repeat."""
    svc: Service = request.app.state.service
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


async def submit_batch(request: Request, tenant: str) -> Response:
    """Submit many jobs in one transaction: all are stored, or none."""
    svc: Service = request.app.state.service
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


async def _submit_job_endpoint(request: Request) -> Response:
    tenant = await authorize(request, "submit")
    return await submit_job(request, tenant, request.headers.get("idempotency-key"))


async def _submit_batch_endpoint(request: Request) -> Response:
    return await submit_batch(request, await authorize(request, "submit"))


class _Route(Route):
    """A Starlette route that puts itself in the scope when it matches, as FastAPI's own
    routes do: request metrics label requests by ``scope["route"].path``."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child_scope = super().matches(scope)
        if match is not Match.NONE:
            child_scope["route"] = self
        return match, child_scope


def routes() -> list[BaseRoute]:
    """The plain routes, to be matched before FastAPI's."""
    return [_Route("/v1/jobs", _submit_job_endpoint, methods=["POST"]),
            _Route("/v1/jobs/batch", _submit_batch_endpoint, methods=["POST"])]
