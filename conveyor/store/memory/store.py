"""The memory store: submission and reads, over its worker side and registries."""

from __future__ import annotations

from collections.abc import Sequence

from ...model import (
    WAITING,
    Job,
    JobFilter,
    NewJob,
    Operation,
    OpFilter,
    OpStatus,
    QueueStats,
    Submitted,
    new_id,
    with_stored_jobs,
)
from ..recent import SLOT_S, SLOTS_1M, SLOTS_5M
from .leases import LeaseMixin
from .records import JobRow, OpRow, json_copy
from .registry import RegistryMixin

WINDOW_1M_S = SLOTS_1M * SLOT_S
WINDOW_5M_S = SLOTS_5M * SLOT_S
"""The memory store counts the stats' recent finishes exactly this far back (the others
by slot, see :mod:`conveyor.store.recent`)."""


class MemoryStore(RegistryMixin, LeaseMixin):
    """The store port in memory (see :mod:`conveyor.store.memory`)."""

    async def insert_jobs(
        self, jobs: Sequence[NewJob], *, return_jobs: bool = False
    ) -> list[Submitted]:
        """All or nothing: the batch is staged first and merged only if every job fits."""
        async with self._lock:
            self._check_open()
            now = self._clock()
            staged: dict[str, JobRow] = {}
            staged_keys: dict[tuple[str, str], str] = {}
            answers: list[Submitted] = []
            seq = self._seq
            for new in jobs:
                if new.idempotency_key is not None:
                    ident = (new.tenant, new.idempotency_key)
                    earlier_id = staged_keys.get(ident) or self._idempotency.get(ident)
                    if earlier_id is not None:
                        earlier = staged.get(earlier_id) or self._jobs[earlier_id]
                        same = earlier.request_hash == new.request_hash
                        answers.append(Submitted(earlier_id, created=False, conflict=not same))
                        continue
                    staged_keys[ident] = new.id
                if new.id in self._jobs or new.id in staged:
                    raise ValueError(f"job id {new.id} already exists")
                job = JobRow(new.id, new.tenant, new.queue, json_copy(new.metadata),
                           new.idempotency_key, new.request_hash, now)
                headers: dict[str, str] = json_copy(new.headers)
                for op in new.operations:
                    seq += 1
                    job.ops.append(OpRow(
                        id=new_id(), job_id=job.id, seq=seq, tenant=new.tenant,
                        queue=new.queue, task=op.task, args=json_copy(op.args), key=op.key,
                        priority=op.priority,
                        status=op.initial_status,
                        max_attempts=op.max_attempts, timeout_s=op.timeout_s,
                        created_at=now, run_at=now + op.delay_s, headers=headers,
                    ))
                staged[job.id] = job
                answers.append(Submitted(job.id, created=True))
            self._seq = seq
            self._idempotency.update(staged_keys)
            for job in staged.values():
                self._jobs[job.id] = job
                self._ops.update((op.id, op) for op in job.ops)
            if return_jobs:
                return with_stored_jobs(answers, {a.job_id: staged[a.job_id].to_job()
                                                  for a in answers if a.created})
            return answers

    def _visible(self, job_id: str, tenant: str | None) -> JobRow | None:
        job = self._jobs.get(job_id)
        if job is None or (tenant is not None and job.tenant != tenant):
            return None
        return job

    async def get_jobs(self, ids: Sequence[str], tenant: str | None = None) -> list[Job]:
        async with self._lock:
            self._check_open()
            found = (self._visible(i, tenant) for i in dict.fromkeys(ids))
            return [job.to_job() for job in found if job is not None]

    async def list_jobs(self, flt: JobFilter) -> list[Job]:
        async with self._lock:
            self._check_open()
            out: list[Job] = []
            for job_id in sorted(self._jobs, reverse=True):
                if len(out) >= flt.limit:
                    break
                job = self._jobs[job_id]
                if (
                    (flt.after is not None and job_id >= flt.after)
                    or (flt.tenant is not None and job.tenant != flt.tenant)
                    or (flt.queue is not None and job.queue != flt.queue)
                    or (flt.task is not None and all(op.task != flt.task for op in job.ops))
                    or (flt.status is not None and job.status() is not flt.status)
                ):
                    continue
                out.append(job.to_job())
            return out

    @staticmethod
    def _matches(op: OpRow, flt: OpFilter) -> bool:
        return (
            (flt.tenant is None or op.tenant == flt.tenant)
            and (flt.queue is None or op.queue == flt.queue)
            and (flt.task is None or op.task == flt.task)
            and (flt.job_id is None or op.job_id == flt.job_id)
            and (flt.ids is None or op.id in flt.ids)
        )

    async def list_operations(self, flt: OpFilter) -> list[Operation]:
        async with self._lock:
            self._check_open()
            after = flt.after_seq or 0
            out: list[Operation] = []
            for op in self._ops.values():
                if len(out) >= flt.limit:
                    break
                if op.seq > after and (flt.status is None or op.status is flt.status) and (
                    self._matches(op, flt)
                ):
                    out.append(op.to_operation())
            return out

    async def cancel_jobs(self, ids: Sequence[str], tenant: str | None = None) -> list[str]:
        async with self._lock:
            self._check_open()
            now = self._clock()
            found: list[str] = []
            for job_id in dict.fromkeys(ids):
                job = self._visible(job_id, tenant)
                if job is None:
                    continue
                found.append(job_id)
                for op in job.ops:
                    if op.status in WAITING:
                        op.finish(OpStatus.CANCELLED, now)
                    elif op.status is OpStatus.RUNNING:
                        op.cancel_requested = True
            return found

    async def replay(self, flt: OpFilter) -> list[str]:
        """Every matching ``dead`` operation (``flt.status``, ``after_seq`` and ``limit`` are
        not used). A replayed operation keeps its ``seq``."""
        async with self._lock:
            self._check_open()
            now = self._clock()
            replayed: list[str] = []
            for op in self._ops.values():
                if op.status is OpStatus.DEAD and self._matches(op, flt):
                    op.status = OpStatus.QUEUED
                    op.attempts = 0
                    op.run_at = now
                    op.result = op.error = None
                    op.started_at = op.finished_at = op.worker_id = None
                    op.cancel_requested = False
                    replayed.append(op.id)
            return replayed

    async def ready_depths(self, cap: int) -> dict[str, int]:
        async with self._lock:
            self._check_open()
            depths: dict[str, int] = {}
            for op in self._ops.values():
                if op.status in WAITING:
                    depths[op.queue] = min(cap, depths.get(op.queue, 0)
                                           + (op.status is OpStatus.QUEUED))
            return depths

    async def stats(self, tenant: str | None = None) -> list[QueueStats]:
        """Queues that hold at least one operation (of ``tenant``), by name."""
        async with self._lock:
            self._check_open()
            now = self._clock()
            counts: dict[str, dict[str, int]] = {}
            oldest: dict[str, float] = {}
            recent: dict[str, list[int]] = {}  # finished 1m, finished 5m, dead 5m
            for op in self._ops.values():
                if tenant is not None and op.tenant != tenant:
                    continue
                by_status = counts.setdefault(op.queue, {s.value: 0 for s in OpStatus})
                by_status[op.status.value] += 1
                if op.status in WAITING and op.run_at <= now:
                    oldest[op.queue] = min(oldest.get(op.queue, op.run_at), op.run_at)
                window = recent.setdefault(op.queue, [0, 0, 0])
                if op.finished_at is not None and op.finished_at >= now - WINDOW_5M_S:
                    window[1] += 1
                    window[0] += op.finished_at >= now - WINDOW_1M_S
                    window[2] += op.status is OpStatus.DEAD
            return [
                QueueStats(
                    queue=queue, counts=by_status,
                    oldest_ready_age_s=max(0.0, now - oldest[queue]) if queue in oldest else None,
                    finished_last_1m=recent[queue][0], finished_last_5m=recent[queue][1],
                    failed_last_5m=recent[queue][2],
                )
                for queue, by_status in sorted(counts.items())
            ]
