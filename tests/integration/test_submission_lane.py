"""The submission lane (conveyor.api.submit.SubmissionLane): ``POST /v1/jobs`` and
``/v1/jobs/batch`` are answered ahead of the app's middleware stack, with the same
metrics and error handling as every other route. A real SQLite store, the app served by
uvicorn over loopback."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from conveyor.api.app import create_app
from conveyor.config import load_config
from conveyor.errors import StoreUnavailable
from conveyor.store.sqlite import SQLiteStore
from conveyor.tasks import Registry
from conveyor.wiring import make_service


class Seen:
    """A middleware added after the app was built: it sees what the app's stack serves."""

    paths: list[tuple[str, str]] = []

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.paths.append((scope["method"], scope["path"]))
        await self.app(scope, receive, send)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[str, FastAPI]]:
    store = SQLiteStore(tmp_path / "lane.db")
    await store.migrate()
    await store.open()
    config = load_config({"store": f"sqlite:///{tmp_path / 'lane.db'}"}, environ={})
    app = create_app(make_service(config, store, Registry.load()), config)
    app.add_middleware(Seen)
    Seen.paths = []
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        await task
        await store.close()


async def test_submissions_skip_the_stack_and_keep_metrics_and_errors(
    served: tuple[str, FastAPI], monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, app = served
    async with httpx.AsyncClient(base_url=url) as client:
        one = await client.post("/v1/jobs", json={"task": "sys.noop"})
        batch = await client.post("/v1/jobs/batch", json={"jobs": [{"task": "sys.noop"}]})
        assert (one.status_code, batch.status_code) == (202, 202)
        assert (await client.get(f"/v1/jobs/{one.json()['id']}")).status_code == 200
        wrong_method = await client.put("/v1/jobs", json={"task": "sys.noop"})
        assert wrong_method.status_code == 405
        assert wrong_method.headers["allow"] == "GET, POST"
        # Only what the lane leaves went through the app's stack.
        assert Seen.paths == [("GET", f"/v1/jobs/{one.json()['id']}"), ("PUT", "/v1/jobs")]

        invalid = await client.post("/v1/jobs", json={"task": "no.such.task"})
        assert invalid.status_code == 422
        assert invalid.headers["content-type"] == "application/problem+json"

        service: Any = app.state.service

        async def unavailable(*_: Any, **__: Any) -> Any:
            raise StoreUnavailable("down for the test")

        monkeypatch.setattr(service.store, "insert_jobs", unavailable)
        down = await client.post("/v1/jobs/batch", json={"jobs": [{"task": "sys.noop"}]})
        assert down.status_code == 503 and down.headers["retry-after"] == "1"
        assert down.json()["instance"] == "/v1/jobs/batch"

        async def broken(*_: Any, **__: Any) -> Any:
            raise RuntimeError("a bug")

        monkeypatch.setattr(service.store, "insert_jobs", broken)
        crash = await client.post("/v1/jobs", json={"task": "sys.noop"})
        assert crash.status_code == 500
        assert crash.json()["detail"] == "an unexpected error occurred"
        assert "a bug" not in crash.text

        metrics = (await client.get("/metrics")).text
    assert Seen.paths[-1] == ("GET", "/metrics")
    for route, status in (("/v1/jobs", 202), ("/v1/jobs/batch", 202), ("/v1/jobs", 422),
                          ("/v1/jobs/batch", 503), ("/v1/jobs", 500)):
        assert (f'conveyor_http_requests_total{{method="POST",route="{route}",'
                f'status="{status}"}} 1.0') in metrics
