"""The probe server of worker and relay processes: ``/metrics``, ``/health/live`` and
``/health/ready`` on ``--metrics-port``, so Kubernetes probes and Prometheus reach every
process, not only the API."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .metrics import CONTENT_TYPE, Metrics


def probe_app(metrics: Metrics, readiness: Callable[[], Awaitable[None]]) -> Starlette:
    """Ready while ``readiness`` returns; 503 with the reason when it raises."""

    async def metrics_route(request: Request) -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    async def live(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def ready(request: Request) -> Response:
        try:
            await readiness()
        except Exception as exc:
            return JSONResponse(
                {"type": "about:blank", "title": "Service Unavailable", "status": 503,
                 "detail": f"not ready: {exc}"},
                status_code=503, media_type="application/problem+json",
                headers={"Retry-After": "1"})
        return JSONResponse({"status": "ok"})

    return Starlette(routes=[
        Route("/metrics", metrics_route), Route("/health/live", live),
        Route("/health/ready", ready),
    ])
