"""The ASGI application: routes, problem+json errors, request metrics, readiness."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from .. import __version__
from ..backpressure import DepthSource
from ..config import Config
from ..observability.metrics import Metrics
from ..observability.tracing import Tracing
from ..service import Service
from . import dashboard, problems, submit
from .middleware import RequestMetrics
from .routes import router, v1


class ConveyorAPI(FastAPI):
    """FastAPI, with the submissions answered ahead of its middleware stack
    (:class:`~conveyor.api.submit.SubmissionLane`), under the same request metrics."""

    _lane: submit.SubmissionLane | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._lane is None:
            metrics: Metrics = self.state.metrics

            def measured(app: ASGIApp) -> ASGIApp:
                return RequestMetrics(app, metrics=metrics)

            self._lane = submit.SubmissionLane(self, super().__call__, measured)
        await self._lane(scope, receive, send)


def create_app(
    service: Service,
    config: Config,
    *,
    metrics: Metrics | None = None,
    tracing: Tracing | None = None,
    readiness: Callable[[], Awaitable[None]] | None = None,
    depth_sources: Sequence[DepthSource] = (),
) -> FastAPI:
    """Build the API over ``service``. ``readiness`` raises when a dependency is down
    (default: the store's ping). ``depth_sources`` add to the store's ready depth for
    backpressure (a transport with its own backlog, e.g. consumer lag, passes one)."""
    app = ConveyorAPI(
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
    protect(app, service, config, depth_sources)
    problems.install(app)
    app.include_router(router)
    app.include_router(v1)  # directly, not inside ``router``: one routing level less
    app.include_router(dashboard.router)
    app.router.routes[0:0] = submit.routes()  # the hot path, matched first

    app.add_middleware(RequestMetrics, metrics=app.state.metrics)
    return app


def protect(app: FastAPI, service: Service, config: Config,
            depth_sources: Sequence[DepthSource] = ()) -> None:
    """Authentication, rate limits and backpressure from ``config`` (docs/security.md)."""
    from ..backpressure import Backpressure, store_ready_depth
    from ..config import backpressure_thresholds
    from ..wiring import make_limiter
    from .auth import Authenticator
    from .limits import RateLimits

    m: Metrics = app.state.metrics
    app.state.auth = Authenticator(service.store, required=config.auth_required)
    limiter = make_limiter(config, on_degraded=lambda down: m.rate_limiter_degraded.set(
        1 if down else 0))
    app.state.rate_limits = RateLimits(
        limiter, m, anonymous=config.rate_limit_anonymous,
        failure_mode=config.rate_limit_failure_mode, rate_per_s=config.rate_limit_per_s)
    thresholds = backpressure_thresholds(config)
    if service.admit is None and any(w or c for w, c in thresholds.values()):
        def on_reject(queue: str, level: str) -> None:
            m.rejections.labels("backpressure").inc()
            m.backpressure_rejections.labels(queue, level).inc()

        cap = 1 + max(max(warn, critical) for warn, critical in thresholds.values())
        service.admit = Backpressure(
            thresholds, [store_ready_depth(service.store, cap), *depth_sources],
            low_priority=config.backpressure_low_priority,
            refresh_s=config.backpressure_refresh_s, on_reject=on_reject).admit
