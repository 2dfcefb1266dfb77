"""Request rate limits at the API: one token bucket per tenant (per client address for
anonymous requests, when enabled), with ``X-RateLimit-Limit`` / ``X-RateLimit-Remaining``
on every limited answer and ``Retry-After`` on 429.

The limiter itself is a port (:mod:`conveyor.ratelimit`): in memory for one API process,
in Redis when several share limits. While Redis is unreachable the limiter's failure mode
decides; ``closed`` answers 503 here, the others let the request through.
"""

from __future__ import annotations

import math

from fastapi import Request

from ..observability.metrics import Metrics
from ..ratelimit.base import Limiter
from .auth import Principal
from .problems import Problem


class RateLimits:
    def __init__(self, limiter: Limiter | None, metrics: Metrics, *, anonymous: bool = False,
                 failure_mode: str = "open", rate_per_s: float = 0.0) -> None:
        self.limiter = limiter
        self.metrics = metrics
        self.anonymous = anonymous
        self.failure_mode = failure_mode
        self.rate_per_s = rate_per_s

    async def check(self, request: Request, principal: Principal) -> None:
        """Take a token for ``principal`` or raise a 429 (503 when the shared limiter is
        down in ``closed`` mode) problem. Headers for a success go to ``request.state``."""
        if self.limiter is None:
            return
        if principal.key_id is None:
            if not self.anonymous:
                return
            who, key = "client", "client:" + (request.client.host if request.client else "?")
        else:
            who, key = "tenant", "tenant:" + principal.tenant
        decision = await self.limiter.acquire(key)
        headers = {"X-RateLimit-Limit": str(decision.limit),
                   "X-RateLimit-Remaining": str(decision.remaining)}
        if decision.degraded:
            self.metrics.rate_limiter_degraded_decisions.labels(self.failure_mode).inc()
        if decision.allowed:
            request.state.rate_headers = headers
            return
        retry_after = str(max(1, math.ceil(decision.retry_after_s)))
        if decision.degraded and self.failure_mode == "closed":
            self.metrics.rejections.labels("rate_limiter_unavailable").inc()
            raise Problem(503, "the rate limiter is unavailable (failure mode 'closed'); "
                          "retry shortly", headers={"Retry-After": retry_after})
        self.metrics.rejections.labels("rate_limit").inc()
        self.metrics.rate_limit_rejections.labels(who).inc()
        raise Problem(429, f"rate limit exceeded ({self.rate_per_s:g} requests/s, burst "
                      f"{decision.limit}, per {'tenant' if who == 'tenant' else 'client'}); "
                      f"retry after {retry_after} s",
                      headers={**headers, "Retry-After": retry_after})
