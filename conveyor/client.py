"""Python clients of the HTTP API: :class:`Client` (blocking) and :class:`AsyncClient`.

Every request is built once, in :class:`_Requests`, together with how its answer is read;
the two clients differ only in how they send it (and sleep while waiting). Any 4xx/5xx
answer raises :class:`ApiError` carrying the server's problem document; an unreachable
server raises ``httpx.TransportError`` (e.g. ``httpx.ConnectError``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from .errors import ConveyorError

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
"""Job statuses that no longer change (until a replay)."""
Doc = dict[str, Any]
Docs = list[Doc]
Ids = list[str]
"""Aliases: inside the client classes ``list`` names the method, not the type."""


class ApiError(ConveyorError):
    """The API answered with an error. The message is the problem's ``detail``; ``status``
    is the HTTP status and ``problem`` the whole problem+json document."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        super().__init__(str(problem.get("detail") or problem.get("title") or f"HTTP {status}"))
        self.status = status
        self.problem = problem


def _identity(body: Any) -> Any:
    return body


@dataclass(frozen=True)
class _Call:
    """One HTTP request and how to turn its JSON answer into the method's return value."""

    method: str
    path: str
    json: Any = None
    params: dict[str, Any] | None = None
    headers: dict[str, str] | None = None
    read: Callable[[Any], Any] = _identity


def _params(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


class _Requests:
    """What each client method sends and returns; shared by both clients."""

    @staticmethod
    def submit(task: str | None, args: dict[str, Any] | None,
               operations: Sequence[dict[str, Any]] | None, key: str | None,
               queue: str | None, idempotency_key: str | None,
               metadata: dict[str, Any] | None, options: dict[str, Any]) -> _Call:
        if operations is None:
            if task is None:
                raise ValueError("submit needs a task or operations")
            operations = [{"task": task, "args": args or {},
                           **({"key": key} if key is not None else {}), **options}]
        elif task is not None or args is not None or key is not None or options:
            raise ValueError("pass either task/args/key/options or operations, not both")
        body: dict[str, Any] = {"operations": list(operations)}
        if queue is not None:
            body["queue"] = queue
        if metadata:
            body["metadata"] = metadata
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return _Call("POST", "/v1/jobs", json=body, headers=headers, read=dict)

    @staticmethod
    def batch(jobs: Sequence[dict[str, Any]]) -> _Call:
        return _Call("POST", "/v1/jobs/batch", json={"jobs": list(jobs)},
                     read=lambda body: list(body["ids"]))

    @staticmethod
    def get(job_id: str) -> _Call:
        return _Call("GET", f"/v1/jobs/{job_id}", read=dict)

    @staticmethod
    def list(status: str | None, queue: str | None, task: str | None, limit: int,
             cursor: str | None) -> _Call:
        return _Call("GET", "/v1/jobs", params=_params(
            status=status, queue=queue, task=task, limit=limit, cursor=cursor), read=dict)

    @staticmethod
    def cancel(job_id: str) -> _Call:
        return _Call("POST", f"/v1/jobs/{job_id}/cancel", read=dict)

    @staticmethod
    def dlq(queue: str | None, task: str | None, job_id: str | None,
            ids: Sequence[str] | None, limit: int, cursor: int | None) -> _Call:
        return _Call("GET", "/v1/dlq", params=_params(
            queue=queue, task=task, job_id=job_id, id=list(ids) if ids else None,
            limit=limit, cursor=cursor), read=dict)

    @staticmethod
    def replay(ids: Sequence[str] | None, queue: str | None, task: str | None,
               job_id: str | None, all: bool) -> _Call:
        body: dict[str, Any] = _params(queue=queue, task=task, job_id=job_id)
        if all:
            body["all"] = True
        if ids is not None:
            body["ids"] = list(ids)
        return _Call("POST", "/v1/dlq/replay", json=body, read=dict)

    @staticmethod
    def tasks() -> _Call:
        return _Call("GET", "/v1/tasks", read=lambda body: list(body["tasks"]))

    @staticmethod
    def stats() -> _Call:
        return _Call("GET", "/v1/stats", read=dict)

    @staticmethod
    def workers(include_gone: bool) -> _Call:
        return _Call("GET", "/v1/workers",
                     params={"include_gone": "true"} if include_gone else None,
                     read=lambda body: list(body["workers"]))


def _answer(call: _Call, response: httpx.Response) -> Any:
    if response.status_code >= 400:
        try:
            problem = response.json()
        except ValueError:
            problem = {"detail": response.text[:500] or response.reason_phrase}
        raise ApiError(response.status_code, problem if isinstance(problem, dict) else {})
    return call.read(response.json())


MAX_RETRY_AFTER_S = 30.0


def _retry_after_s(response: httpx.Response, attempt: int, retries: int) -> float | None:
    """How long to wait before sending again a request refused with 429, or None to give
    up. A 429 is never processed (rate limit, or backpressure on low-priority work), so
    sending it again is safe; the server's ``Retry-After`` is followed, capped."""
    if response.status_code != 429 or attempt >= retries:
        return None
    try:
        return min(MAX_RETRY_AFTER_S, max(0.05, float(response.headers.get("retry-after", 1))))
    except ValueError:
        return 1.0


def _headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


class _Waiting:
    """The polling rule of ``wait``, shared by both clients."""

    def __init__(self, job_id: str, timeout_s: float) -> None:
        self.job_id = job_id
        self.timeout_s = timeout_s
        self.deadline = time.monotonic() + timeout_s

    def done(self, job: Doc) -> bool:
        if job["status"] in TERMINAL:
            return True
        if time.monotonic() > self.deadline:
            raise TimeoutError(
                f"job {self.job_id} is still {job['status']} after {self.timeout_s} s")
        return False


class Client:
    """Blocking client: ``Client("http://127.0.0.1:8000").submit("math.add", {"a": 1, "b": 2})``.

    One connection pool per instance; use it as a context manager or call :meth:`close`.
    """

    def __init__(self, url: str = "http://127.0.0.1:8000", timeout_s: float = 10.0,
                 api_key: str | None = None, rate_limit_retries: int = 5) -> None:
        self._http = httpx.Client(base_url=url, timeout=timeout_s, headers=_headers(api_key))
        self._retries = rate_limit_retries

    def _do(self, call: _Call) -> Any:
        attempt = 0
        while True:
            response = self._http.request(call.method, call.path, json=call.json,
                                          params=call.params, headers=call.headers)
            delay_s = _retry_after_s(response, attempt, self._retries)
            if delay_s is None:
                return _answer(call, response)
            time.sleep(delay_s)
            attempt += 1

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def submit(self, task: str | None = None, args: dict[str, Any] | None = None, *,
               operations: Sequence[dict[str, Any]] | None = None, key: str | None = None,
               queue: str | None = None, idempotency_key: str | None = None,
               metadata: dict[str, Any] | None = None, **op_options: Any) -> Doc:
        """Submit one job and return it as stored, once it is durable. With
        ``idempotency_key``, a repeat of the same request returns the original job.
        ``op_options``: ``priority``, ``delay_s``, ``max_attempts``, ``timeout_s``."""
        result: Doc = self._do(_Requests.submit(task, args, operations, key, queue,
                                                idempotency_key, metadata, op_options))
        return result

    def submit_batch(self, jobs: Sequence[dict[str, Any]]) -> Ids:
        """Submit many jobs in one transaction (all stored, or none); their ids in order."""
        ids: Ids = self._do(_Requests.batch(jobs))
        return ids

    def get(self, job_id: str) -> Doc:
        job: Doc = self._do(_Requests.get(job_id))
        return job

    def wait(self, job_id: str, timeout_s: float = 60.0, poll_s: float = 0.1) -> Doc:
        """The job once it is succeeded, failed or cancelled; ``TimeoutError`` otherwise."""
        waiting = _Waiting(job_id, timeout_s)
        while not waiting.done(job := self.get(job_id)):
            time.sleep(poll_s)
        return job

    def list(self, *, status: str | None = None, queue: str | None = None,
             task: str | None = None, limit: int = 50, cursor: str | None = None) -> Doc:
        """One page, newest first: ``{"jobs": [...], "next_cursor": id or None}``."""
        page: Doc = self._do(_Requests.list(status, queue, task, limit, cursor))
        return page

    def cancel(self, job_id: str) -> Doc:
        """Cancel what has not finished; returns the job as it is now."""
        job: Doc = self._do(_Requests.cancel(job_id))
        return job

    def dlq(self, *, queue: str | None = None, task: str | None = None,
            job_id: str | None = None, ids: Sequence[str] | None = None, limit: int = 50,
            cursor: int | None = None) -> Doc:
        """Dead operations, oldest first: ``{"operations": [...], "next_cursor": ...}``."""
        page: Doc = self._do(_Requests.dlq(queue, task, job_id, ids, limit, cursor))
        return page

    def replay(self, ids: Sequence[str] | None = None, *, queue: str | None = None,
               task: str | None = None, job_id: str | None = None, all: bool = False) -> Doc:
        """Queue dead operations again: by ``ids``, by filter, or ``all=True``. Returns
        ``{"replayed": [ids], "count": n}``. Nothing named is an error (422)."""
        answer: Doc = self._do(_Requests.replay(ids, queue, task, job_id, all))
        return answer

    def tasks(self) -> Docs:
        tasks: Docs = self._do(_Requests.tasks())
        return tasks

    def stats(self) -> Doc:
        """``{"queues": [{queue, counts, oldest_ready_age_s, throughput_*_per_s, ...}]}``."""
        stats: Doc = self._do(_Requests.stats())
        return stats

    def workers(self, include_gone: bool = False) -> Docs:
        workers: Docs = self._do(_Requests.workers(include_gone))
        return workers


class AsyncClient:
    """The asyncio twin of :class:`Client`: the same methods, as coroutines."""

    def __init__(self, url: str = "http://127.0.0.1:8000", timeout_s: float = 10.0,
                 api_key: str | None = None, rate_limit_retries: int = 5) -> None:
        self._http = httpx.AsyncClient(base_url=url, timeout=timeout_s,
                                       headers=_headers(api_key))
        self._retries = rate_limit_retries

    async def _do(self, call: _Call) -> Any:
        attempt = 0
        while True:
            response = await self._http.request(
                call.method, call.path, json=call.json, params=call.params, headers=call.headers)
            delay_s = _retry_after_s(response, attempt, self._retries)
            if delay_s is None:
                return _answer(call, response)
            await asyncio.sleep(delay_s)
            attempt += 1

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def submit(self, task: str | None = None, args: dict[str, Any] | None = None, *,
                     operations: Sequence[dict[str, Any]] | None = None,
                     key: str | None = None, queue: str | None = None,
                     idempotency_key: str | None = None,
                     metadata: dict[str, Any] | None = None, **op_options: Any) -> Doc:
        """See :meth:`Client.submit`."""
        result: Doc = await self._do(_Requests.submit(task, args, operations, key, queue,
                                                      idempotency_key, metadata, op_options))
        return result

    async def submit_batch(self, jobs: Sequence[dict[str, Any]]) -> Ids:
        ids: Ids = await self._do(_Requests.batch(jobs))
        return ids

    async def get(self, job_id: str) -> Doc:
        job: Doc = await self._do(_Requests.get(job_id))
        return job

    async def wait(self, job_id: str, timeout_s: float = 60.0, poll_s: float = 0.1) -> Doc:
        """See :meth:`Client.wait`."""
        waiting = _Waiting(job_id, timeout_s)
        while not waiting.done(job := await self.get(job_id)):
            await asyncio.sleep(poll_s)
        return job

    async def list(self, *, status: str | None = None, queue: str | None = None,
                   task: str | None = None, limit: int = 50, cursor: str | None = None) -> Doc:
        page: Doc = await self._do(_Requests.list(status, queue, task, limit, cursor))
        return page

    async def cancel(self, job_id: str) -> Doc:
        job: Doc = await self._do(_Requests.cancel(job_id))
        return job

    async def dlq(self, *, queue: str | None = None, task: str | None = None,
                  job_id: str | None = None, ids: Sequence[str] | None = None,
                  limit: int = 50, cursor: int | None = None) -> Doc:
        page: Doc = await self._do(_Requests.dlq(queue, task, job_id, ids, limit, cursor))
        return page

    async def replay(self, ids: Sequence[str] | None = None, *, queue: str | None = None,
                     task: str | None = None, job_id: str | None = None,
                     all: bool = False) -> Doc:
        answer: Doc = await self._do(_Requests.replay(ids, queue, task, job_id, all))
        return answer

    async def tasks(self) -> Docs:
        tasks: Docs = await self._do(_Requests.tasks())
        return tasks

    async def stats(self) -> Doc:
        stats: Doc = await self._do(_Requests.stats())
        return stats

    async def workers(self, include_gone: bool = False) -> Docs:
        workers: Docs = await self._do(_Requests.workers(include_gone))
        return workers
