"""Python clients of the HTTP API: :class:`Client` (blocking) and :class:`AsyncClient`.

Both build the same requests (:class:`_Requests`) and raise :class:`ApiError` carrying the
server's problem document for any 4xx/5xx answer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from .errors import ConveyorError

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
Jobs = list[dict[str, Any]]
Ids = list[str]


class ApiError(ConveyorError):
    """The API answered with an error; ``problem`` is its problem+json document."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        super().__init__(f"{status}: {problem.get('detail') or problem.get('title')}")
        self.status = status
        self.problem = problem


@dataclass(frozen=True)
class _Call:
    method: str
    path: str
    json: Any = None
    params: dict[str, Any] | None = None
    headers: dict[str, str] | None = None


class _Requests:
    """What each client method sends; shared by both clients."""

    @staticmethod
    def submit(task: str | None, args: dict[str, Any] | None, operations: Sequence[dict[str, Any]]
               | None, key: str | None, queue: str | None, idempotency_key: str | None,
               metadata: dict[str, Any] | None, options: dict[str, Any]) -> _Call:
        if operations is None:
            if task is None:
                raise ValueError("submit needs a task or operations")
            operations = [{"task": task, "args": args or {}, **({"key": key} if key else {}),
                           **options}]
        body: dict[str, Any] = {"operations": list(operations)}
        if queue:
            body["queue"] = queue
        if metadata:
            body["metadata"] = metadata
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return _Call("POST", "/v1/jobs", json=body, headers=headers)

    @staticmethod
    def batch(jobs: Sequence[dict[str, Any]]) -> _Call:
        return _Call("POST", "/v1/jobs/batch", json={"jobs": list(jobs)})

    @staticmethod
    def filters(**filters: Any) -> dict[str, Any]:
        return {k: v for k, v in filters.items() if v is not None}

    @staticmethod
    def replay(ids: Sequence[str] | None, filters: dict[str, Any]) -> _Call:
        body = {k: v for k, v in filters.items() if v not in (None, False)}
        if ids is not None:
            body["ids"] = list(ids)
        return _Call("POST", "/v1/dlq/replay", json=body)


def _answer(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        try:
            problem = response.json()
        except ValueError:
            problem = {"detail": response.text[:500]}
        raise ApiError(response.status_code, problem if isinstance(problem, dict) else {})
    return response.json()


class Client:
    """Blocking client. ``Client("http://127.0.0.1:8000").submit("math.add", {"a": 1, "b": 2})``"""

    def __init__(self, url: str = "http://127.0.0.1:8000", *, timeout_s: float = 10.0,
                 api_key: str | None = None) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=url, timeout=timeout_s, headers=headers)

    def _do(self, call: _Call) -> Any:
        return _answer(self._http.request(call.method, call.path, json=call.json,
                                          params=call.params, headers=call.headers))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def submit(self, task: str | None = None, args: dict[str, Any] | None = None, *,
               operations: Sequence[dict[str, Any]] | None = None, key: str | None = None,
               queue: str | None = None, idempotency_key: str | None = None,
               metadata: dict[str, Any] | None = None, **options: Any) -> dict[str, Any]:
        """Submit one job; returns it as stored (202), or the original on an idempotent
        repeat. ``options``: priority, delay_s, max_attempts, timeout_s."""
        return dict(self._do(_Requests.submit(task, args, operations, key, queue,
                                              idempotency_key, metadata, options)))

    def submit_batch(self, jobs: Sequence[dict[str, Any]]) -> Ids:
        return list(self._do(_Requests.batch(jobs))["ids"])

    def get(self, job_id: str) -> dict[str, Any]:
        return dict(self._do(_Call("GET", f"/v1/jobs/{job_id}")))

    def wait(self, job_id: str, timeout_s: float = 60.0, poll_s: float = 0.1) -> dict[str, Any]:
        """The job once it is succeeded, failed or cancelled; TimeoutError otherwise."""
        deadline = time.monotonic() + timeout_s
        while True:
            job = self.get(job_id)
            if job["status"] in TERMINAL:
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} is still {job['status']} after {timeout_s} s")
            time.sleep(poll_s)

    def list(self, *, status: str | None = None, queue: str | None = None,
             task: str | None = None, limit: int = 50, cursor: str | None = None
             ) -> dict[str, Any]:
        params = _Requests.filters(status=status, queue=queue, task=task, limit=limit,
                                   cursor=cursor)
        return dict(self._do(_Call("GET", "/v1/jobs", params=params)))

    def cancel(self, job_id: str) -> dict[str, Any]:
        return dict(self._do(_Call("POST", f"/v1/jobs/{job_id}/cancel")))

    def dlq(self, *, queue: str | None = None, task: str | None = None,
            job_id: str | None = None, limit: int = 50, cursor: int | None = None
            ) -> dict[str, Any]:
        params = _Requests.filters(queue=queue, task=task, job_id=job_id, limit=limit,
                                   cursor=cursor)
        return dict(self._do(_Call("GET", "/v1/dlq", params=params)))

    def replay(self, ids: Sequence[str] | None = None, *, queue: str | None = None,
               task: str | None = None, job_id: str | None = None, all: bool = False
               ) -> dict[str, Any]:
        filters = {"queue": queue, "task": task, "job_id": job_id, "all": all}
        return dict(self._do(_Requests.replay(ids, filters)))

    def tasks(self) -> Jobs:
        return list(self._do(_Call("GET", "/v1/tasks"))["tasks"])

    def stats(self) -> dict[str, Any]:
        return dict(self._do(_Call("GET", "/v1/stats")))

    def workers(self, include_gone: bool = False) -> Jobs:
        params = {"include_gone": "true"} if include_gone else None
        return list(self._do(_Call("GET", "/v1/workers", params=params))["workers"])


class AsyncClient:
    """The asyncio twin of :class:`Client`, with the same methods as coroutines."""

    def __init__(self, url: str = "http://127.0.0.1:8000", *, timeout_s: float = 10.0,
                 api_key: str | None = None) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.AsyncClient(base_url=url, timeout=timeout_s, headers=headers)

    async def _do(self, call: _Call) -> Any:
        return _answer(await self._http.request(call.method, call.path, json=call.json,
                                                params=call.params, headers=call.headers))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def submit(self, task: str | None = None, args: dict[str, Any] | None = None, *,
                     operations: Sequence[dict[str, Any]] | None = None, key: str | None = None,
                     queue: str | None = None, idempotency_key: str | None = None,
                     metadata: dict[str, Any] | None = None, **options: Any) -> dict[str, Any]:
        return dict(await self._do(_Requests.submit(task, args, operations, key, queue,
                                                    idempotency_key, metadata, options)))

    async def submit_batch(self, jobs: Sequence[dict[str, Any]]) -> Ids:
        return list((await self._do(_Requests.batch(jobs)))["ids"])

    async def get(self, job_id: str) -> dict[str, Any]:
        return dict(await self._do(_Call("GET", f"/v1/jobs/{job_id}")))

    async def wait(self, job_id: str, timeout_s: float = 60.0, poll_s: float = 0.1
                   ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            job = await self.get(job_id)
            if job["status"] in TERMINAL:
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} is still {job['status']} after {timeout_s} s")
            await asyncio.sleep(poll_s)

    async def list(self, *, status: str | None = None, queue: str | None = None,
                   task: str | None = None, limit: int = 50, cursor: str | None = None
                   ) -> dict[str, Any]:
        params = _Requests.filters(status=status, queue=queue, task=task, limit=limit,
                                   cursor=cursor)
        return dict(await self._do(_Call("GET", "/v1/jobs", params=params)))

    async def cancel(self, job_id: str) -> dict[str, Any]:
        return dict(await self._do(_Call("POST", f"/v1/jobs/{job_id}/cancel")))

    async def dlq(self, *, queue: str | None = None, task: str | None = None,
                  job_id: str | None = None, limit: int = 50, cursor: int | None = None
                  ) -> dict[str, Any]:
        params = _Requests.filters(queue=queue, task=task, job_id=job_id, limit=limit,
                                   cursor=cursor)
        return dict(await self._do(_Call("GET", "/v1/dlq", params=params)))

    async def replay(self, ids: Sequence[str] | None = None, *, queue: str | None = None,
                     task: str | None = None, job_id: str | None = None, all: bool = False
                     ) -> dict[str, Any]:
        filters = {"queue": queue, "task": task, "job_id": job_id, "all": all}
        return dict(await self._do(_Requests.replay(ids, filters)))

    async def tasks(self) -> Jobs:
        return list((await self._do(_Call("GET", "/v1/tasks")))["tasks"])

    async def stats(self) -> dict[str, Any]:
        return dict(await self._do(_Call("GET", "/v1/stats")))

    async def workers(self, include_gone: bool = False) -> Jobs:
        params = {"include_gone": "true"} if include_gone else None
        return list((await self._do(_Call("GET", "/v1/workers", params=params)))["workers"])
