"""The request-metrics middleware counts every request once, also one whose handler
raised (it becomes a 500 further out), and adds the rate-limit headers it was given."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from conveyor.api.middleware import RequestMetrics
from conveyor.observability.metrics import Metrics


def _count(metrics: Metrics, status: str) -> float:
    value = metrics.registry.get_sample_value(
        "conveyor_http_requests_total", {"method": "GET", "route": "unmatched",
                                         "status": status})
    return value or 0.0


def _scope() -> dict[str, Any]:
    return {"type": "http", "method": "GET", "path": "/x", "state": {}}


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


def test_a_request_that_raises_is_counted_as_a_500() -> None:
    metrics = Metrics()

    async def broken(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("boom")

    async def ignore(message: Any) -> None:
        return None

    with pytest.raises(RuntimeError):
        asyncio.run(RequestMetrics(broken, metrics)(_scope(), _receive, ignore))
    assert _count(metrics, "500") == 1


def test_status_and_rate_headers_of_an_answered_request() -> None:
    metrics = Metrics()
    sent: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        scope["state"]["rate_headers"] = {"X-RateLimit-Remaining": "9"}
        await send({"type": "http.response.start", "status": 202, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async def collect(message: Any) -> None:
        sent.append(message)

    asyncio.run(RequestMetrics(app, metrics)(_scope(), _receive, collect))
    assert _count(metrics, "202") == 1
    assert (b"x-ratelimit-remaining", b"9") in sent[0]["headers"]


def test_submissions_are_counted_per_queue_across_calls() -> None:
    """Jobs and operations per queue add up over calls (the labelled counters are cached
    per queue after the first call)."""
    from conveyor.model import NewJob, NewOperation

    def job(queue: str, ops: int) -> NewJob:
        return NewJob(tuple(NewOperation("t", {}) for _ in range(ops)), queue=queue)

    metrics = Metrics()
    metrics.count_submitted([job("a", 1), job("b", 3), job("a", 2)])
    metrics.count_submitted([job("a", 1)])
    metrics.count_submitted([])
    sample = metrics.registry.get_sample_value
    assert sample("conveyor_jobs_submitted_total", {"queue": "a"}) == 3
    assert sample("conveyor_operations_submitted_total", {"queue": "a"}) == 4
    assert sample("conveyor_jobs_submitted_total", {"queue": "b"}) == 1
    assert sample("conveyor_operations_submitted_total", {"queue": "b"}) == 3
