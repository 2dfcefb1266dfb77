"""The application service: the one path for submit, read, cancel, replay and stats.

Both the HTTP routes and in-process Python callers go through :class:`Service`, so
validation, idempotency and tenancy are enforced in exactly one place.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from .config import Limits
from .errors import IdempotencyConflict, NotFound, ValidationError
from .model import (
    Job,
    JobFilter,
    NewJob,
    Operation,
    OpFilter,
    OpStatus,
    QueueStats,
    Submitted,
    TaskInfo,
    new_ids,
)
from .store.base import Store
from .submission import parse_job
from .tasks import Registry


class TaskCatalog:
    """Task facts known to this process: local ones plus those workers published.

    Published tasks are re-read at most every ``refresh_s``, and at once when a submission
    names a task not seen yet (so a just-started worker's tasks are usable immediately).
    """

    def __init__(self, store: Store, local: Registry | None = None, refresh_s: float = 5.0):
        self._store = store
        self._local = {info.name: info for info in (local.infos() if local else [])}
        self._published: dict[str, TaskInfo] = {}
        self._refresh_s = refresh_s
        self._loaded_at = -1e9
        self._lock = asyncio.Lock()

    async def refresh(self) -> None:
        async with self._lock:
            self._published = {t.name: t for t in await self._store.list_tasks()}
            self._loaded_at = time.monotonic()

    async def resolve(self, names: set[str]) -> Mapping[str, TaskInfo]:
        known = self.snapshot()
        stale = time.monotonic() - self._loaded_at > self._refresh_s
        if stale or not names <= known.keys():
            await self.refresh()
            known = self.snapshot()
        return known

    def snapshot(self) -> dict[str, TaskInfo]:
        return {**self._published, **self._local}


def _task_names(bodies: Sequence[Any]) -> set[str]:
    names: set[str] = set()
    for body in bodies:
        if not isinstance(body, dict):
            continue
        ops = body.get("operations", [body])
        for op in ops if isinstance(ops, list) else []:
            if isinstance(op, dict) and isinstance(op.get("task"), str):
                names.add(op["task"])
    return names


class Service:
    """Use cases over a :class:`Store`.

    ``on_submit`` is awaited after every durable insert with the jobs that were created
    (and after a replay, with none): the embedded tier wakes its local workers with it,
    the API counts submissions."""

    def __init__(
        self,
        store: Store,
        catalog: TaskCatalog,
        limits: Limits | None = None,
        on_submit: Callable[[Sequence[NewJob]], Awaitable[None]] | None = None,
        admit: Callable[[Sequence[NewJob]], Awaitable[None]] | None = None,
        transport_stats: Callable[[Sequence[str]], Awaitable[dict[str, Any]]] | None = None,
    ) -> None:
        self.store = store
        self.catalog = catalog
        self.limits = limits or Limits()
        self._on_submit = on_submit
        self.admit = admit
        """Awaited with validated jobs before they are stored; raises to refuse them
        (backpressure: :class:`conveyor.errors.Overloaded`)."""
        self.transport_stats_source = transport_stats

    async def submit(
        self,
        body: Any,
        *,
        tenant: str = "default",
        idempotency_key: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[Job, bool]:
        """Validate and durably store one job; returns it and whether it was new.

        A new job is returned as the insert stored it (no second read), so its status is
        the submitted one even if a worker has claimed it since.

        With an idempotency key, a repeat of the same body returns the original job
        (``False``), a different body raises :class:`IdempotencyConflict`.
        """
        tasks = await self.catalog.resolve(_task_names([body]))
        new = parse_job(body, tasks, self.limits, tenant=tenant,
                        idempotency_key=idempotency_key, headers=headers)
        (answer,) = await self._insert([new], return_jobs=True)
        if answer.conflict:
            raise IdempotencyConflict(
                "this Idempotency-Key was already used with a different request body"
            )
        if answer.job is not None:  # created: the job as this insert stored it
            return answer.job, True
        return await self.get(answer.job_id, tenant), answer.created

    async def submit_many(
        self, bodies: Sequence[Any], *, tenant: str = "default",
        headers: Mapping[str, str] | None = None,
    ) -> list[str]:
        """Validate every body first, then store them all in one transaction (all or none).

        Returns the new job ids in order."""
        jobs = await self.parse_many(bodies, tenant=tenant, headers=headers)
        return [answer.job_id for answer in await self._insert(jobs)]

    async def parse_many(
        self, bodies: Sequence[Any], *, tenant: str = "default",
        headers: Mapping[str, str] | None = None,
    ) -> list[NewJob]:
        """Validate a batch of job bodies as :meth:`submit_many` does, without storing
        them: the jobs with their new ids, or :class:`ValidationError` naming the first
        bad one (``jobs[i]: ...``)."""
        if not bodies:
            raise ValidationError("jobs: expected a non-empty list")
        if len(bodies) > self.limits.max_jobs_per_batch:
            raise ValidationError(f"jobs: more than {self.limits.max_jobs_per_batch} in one batch")
        tasks = await self.catalog.resolve(_task_names(bodies))
        jobs: list[NewJob] = []
        for i, (body, job_id) in enumerate(zip(bodies, new_ids(len(bodies)), strict=True)):
            try:
                jobs.append(parse_job(body, tasks, self.limits, tenant=tenant, headers=headers,
                                      job_id=job_id))
            except ValidationError as exc:
                raise ValidationError(f"jobs[{i}]: {exc}", errors=exc.errors) from exc
        return jobs

    async def enqueue(self, task: str, /, **args: Any) -> str:
        """Python convenience: submit one operation of ``task`` with keyword ``args``."""
        job, _ = await self.submit({"task": task, "args": args})
        return job.id

    async def _insert(self, jobs: Sequence[NewJob], return_jobs: bool = False) -> list[Submitted]:
        if self.admit is not None:
            await self.admit(jobs)
        answers = await self.store.insert_jobs(jobs, return_jobs=return_jobs)
        if self._on_submit is not None:
            await self._on_submit([j for j, a in zip(jobs, answers, strict=True) if a.created])
        return answers

    async def get(self, job_id: str, tenant: str | None = None) -> Job:
        jobs = await self.store.get_jobs([job_id], tenant)
        if not jobs:
            raise NotFound(f"no job {job_id!r}")
        return jobs[0]

    async def list_jobs(self, flt: JobFilter) -> list[Job]:
        return await self.store.list_jobs(flt)

    async def operation(self, job_id: str, op_id: str, tenant: str | None = None) -> Operation:
        for op in (await self.get(job_id, tenant)).operations:
            if op.id == op_id:
                return op
        raise NotFound(f"no operation {op_id!r} in job {job_id!r}")

    async def cancel(self, job_id: str, tenant: str | None = None) -> Job:
        if not await self.store.cancel_jobs([job_id], tenant):
            raise NotFound(f"no job {job_id!r}")
        return await self.get(job_id, tenant)

    async def dead_letters(self, flt: OpFilter) -> list[Operation]:
        return await self.store.list_operations(
            OpFilter(tenant=flt.tenant, status=OpStatus.DEAD, queue=flt.queue, task=flt.task,
                     job_id=flt.job_id, ids=flt.ids, after_seq=flt.after_seq, limit=flt.limit)
        )

    async def replay(self, flt: OpFilter) -> list[str]:
        """Replay dead operations matching ``flt`` (ids and/or queue/task filters)."""
        ids = await self.store.replay(flt)
        if ids and self._on_submit is not None:
            await self._on_submit([])
        return ids

    async def tasks(self) -> list[TaskInfo]:
        await self.catalog.refresh()
        return sorted(self.catalog.snapshot().values(), key=lambda t: t.name)

    async def stats(self, tenant: str | None = None) -> list[QueueStats]:
        return await self.store.stats(tenant)

    async def transport_stats(self, queues: Sequence[str]) -> dict[str, Any] | None:
        """Transport-side figures (Kafka: consumer lag per partition, outbox backlog),
        or ``None`` for the store-backed transport. Never raises for an unreachable
        transport (the figures then carry the error)."""
        if self.transport_stats_source is None:
            return None
        try:
            return await self.transport_stats_source(queues)
        except Exception as exc:  # stats must not fail because Kafka is down
            return {"error": f"{type(exc).__name__}: {exc}"}
