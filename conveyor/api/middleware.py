"""Request metrics (and the rate-limit headers of an admitted request) as plain ASGI
middleware.

Plain ASGI rather than Starlette's ``BaseHTTPMiddleware``: that one runs every request in
an extra task with memory streams for the body and the response, which cost more CPU
than the rest of a submission. This wraps ``send`` only: the body is not touched, so the
size limits enforced while reading it (:mod:`conveyor.api.body`) still apply unchanged.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import Counter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..observability.histogram import HistogramChild
from ..observability.metrics import Metrics


class RequestMetrics:
    """Counts every HTTP request by method, route template and status, and observes its
    handling time; adds ``request.state.rate_headers`` (set by the rate limiter) to the
    response. Labelled children are cached: a label lookup in prometheus_client takes a
    lock and builds a tuple each time."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        self._counters: dict[tuple[str, str, int], Counter] = {}
        self._histograms: dict[tuple[str, str], HistogramChild] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                state: dict[str, Any] | None = scope.get("state")
                rate_headers = state.get("rate_headers") if state else None
                if rate_headers:
                    message["headers"] = [
                        *message.get("headers", ()),
                        *((k.lower().encode("latin-1"), v.encode("latin-1"))
                          for k, v in rate_headers.items())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:  # an exception escaping the app is counted as the 500 it becomes
            self._observe(scope, status, time.perf_counter() - started)

    def _observe(self, scope: Scope, status: int, elapsed_s: float) -> None:
        route = scope.get("route")
        template = getattr(route, "path", "unmatched")
        method: str = scope["method"]
        counter = self._counters.get((method, template, status))
        if counter is None:
            counter = self.metrics.http_requests.labels(method, template, str(status))
            self._counters[(method, template, status)] = counter
        counter.inc()
        histogram = self._histograms.get((method, template))
        if histogram is None:
            histogram = self.metrics.http_duration.labels(method, template)
            self._histograms[(method, template)] = histogram
        histogram.observe(elapsed_s)
