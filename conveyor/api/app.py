"""The ASGI application: routes, problem+json errors, request metrics, readiness."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response

from .. import __version__
from ..config import Config
from ..observability.metrics import Metrics
from ..observability.tracing import Tracing
from ..service import Service
from . import dashboard, problems
from .routes import router


def create_app(
    service: Service,
    config: Config,
    *,
    metrics: Metrics | None = None,
    tracing: Tracing | None = None,
    readiness: Callable[[], Awaitable[None]] | None = None,
) -> FastAPI:
    """Build the API over ``service``. ``readiness`` raises when a dependency is down
    (default: the store's ping)."""
    app = FastAPI(
        title="Conveyor",
        version=__version__,
        description="Submit jobs, follow them, replay dead letters. Errors are "
        "application/problem+json (RFC 9457).",
    )
    app.state.service = service
    app.state.config = config
    app.state.metrics = metrics or Metrics()
    app.state.tracing = tracing or Tracing()
    app.state.readiness = readiness or service.store.ping
    problems.install(app)
    app.include_router(router)
    app.include_router(dashboard.router)

    @app.middleware("http")
    async def count_requests(request: Request, call_next: Callable[[Request], Awaitable[Response]]
                             ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        template = getattr(route, "path", "unmatched")
        m: Metrics = app.state.metrics
        m.http_requests.labels(request.method, template, str(response.status_code)).inc()
        m.http_duration.labels(request.method, template).observe(time.perf_counter() - started)
        return response

    return app
