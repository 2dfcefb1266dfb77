"""The submission routes, ``POST /v1/jobs`` and ``POST /v1/jobs/batch``: the API's hot path.

A ``POST`` to either path is answered by :class:`SubmissionLane` before the app's
middleware stack: only the request metrics and the app's own exception handlers wrap it.
FastAPI's dependency solving and route matching cost about as much CPU as the submission
itself (measured over ASGI on the memory store: 270-300 µs per request through FastAPI,
160-175 µs through plain routes), and its middleware layers (server errors, exception
middleware, exit stacks, routing) another fifth of the API's main thread in B2. The
FastAPI declarations in :mod:`conveyor.api.routes` stay: they document both routes in the
OpenAPI schema and run the same functions, so every path answers alike (authentication,
rate limits, problem+json errors through the app's handlers, metrics by route template).
The plain routes (:func:`routes`) stay in the router too, for what the lane leaves to it:
other methods (405 with ``Allow``) and apps mounted under a root path.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.routing import BaseRoute, Match, Route
from starlette.types import ASGIApp, Receive, Scope, Send

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


_ROUTES = {"/v1/jobs": _submit_job_endpoint, "/v1/jobs/batch": _submit_batch_endpoint}


def routes() -> list[BaseRoute]:
    """The plain routes, to be matched before FastAPI's."""
    return [_Route(path, endpoint, methods=["POST"]) for path, endpoint in _ROUTES.items()]


class SubmissionLane:
    """ASGI: ``POST /v1/jobs`` and ``POST /v1/jobs/batch`` straight to their endpoints
    (under ``metrics``, a middleware factory such as request metrics); everything else to
    ``app``'s own stack. An exception is answered by the handler ``app`` registered for
    its nearest class, as its exception middleware would (the ``Exception`` handler, for
    unexpected ones, logs them)."""

    def __init__(self, app: FastAPI, stack: ASGIApp,
                 metrics: Callable[[ASGIApp], ASGIApp]) -> None:
        self.app = app
        self.stack = stack
        self._routes = {route.path: route for route in routes() if isinstance(route, _Route)}
        self._serve = metrics(self._endpoint)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = (self._routes.get(scope["path"]) if scope["type"] == "http"
                 and scope["method"] == "POST" and not scope.get("root_path") else None)
        if route is None:
            await self.stack(scope, receive, send)
            return
        scope["app"] = self.app
        scope["route"] = route  # the metrics label, as the router would set it
        await self._serve(scope, receive, send)

    async def _endpoint(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        try:
            response = await scope["route"].endpoint(request)
        except Exception as exc:
            response = await self._handler(exc)(request, exc)
        await response(scope, receive, send)

    def _handler(self, exc: Exception) -> Callable[[Request, Exception], Awaitable[Response]]:
        handlers = self.app.exception_handlers
        for cls in type(exc).__mro__:
            if cls in handlers:
                return handlers[cls]  # type: ignore[return-value]
        raise exc  # no handler, not even for Exception: the server's own 500
