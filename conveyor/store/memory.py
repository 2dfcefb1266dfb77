"""In-memory store: the :class:`~conveyor.store.base.Store` port on plain dicts.

For unit tests of the core and for ``memory://`` demos: nothing survives the process.
Everything else behaves like a database adapter and passes the same conformance suite
(:mod:`conveyor.testing.store_contract`): every method runs under one lock, so each call
is one atomic "transaction"; stored JSON is copied through ``json`` on the way in and
copied again on the way out, so callers never share mutable state with the store.

The clock is injectable (``MemoryStore(clock=fake.time)``) so core tests can move time
without sleeping; all times (``run_at``, lease expiry) come from it.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from ..errors import StoreUnavailable
from ..keys import ApiKey
from ..model import (
    JSON,
    OPEN,
    WAITING,
    Claim,
    ErrorInfo,
    Job,
    JobFilter,
    JobStatus,
    Lease,
    LeaseState,
    NewJob,
    Operation,
    OpFilter,
    OpStatus,
    Outcome,
    OutcomeKind,
    QueueStats,
    Submitted,
    TaskInfo,
    WorkerInfo,
    job_status,
    new_id,
    with_stored_jobs,
)
from .recent import SLOT_S, SLOTS_1M, SLOTS_5M

SCHEMA_VERSION = 1
WINDOW_1M_S = SLOTS_1M * SLOT_S
WINDOW_5M_S = SLOTS_5M * SLOT_S
"""The memory store counts the stats' recent finishes exactly this far back (the others
by slot, see :mod:`.recent`)."""


def _json_copy(value: JSON) -> JSON:
    """What a database would give back: JSON text parsed again (tuples become lists...)."""
    return json.loads(json.dumps(value))


@dataclass
class _Op:
    id: str
    job_id: str
    seq: int
    tenant: str
    queue: str
    task: str
    args: dict[str, JSON]
    key: str | None
    priority: int
    status: OpStatus
    max_attempts: int
    timeout_s: float | None
    created_at: float
    run_at: float
    headers: dict[str, str]
    attempts: int = 0
    result: JSON = None
    error: ErrorInfo | None = None
    started_at: float | None = None
    finished_at: float | None = None
    worker_id: str | None = None
    lease_token: int = 0
    lease_expires_at: float | None = None
    cancel_requested: bool = False

    def held_by(self, lease_token: int) -> bool:
        return self.status is OpStatus.RUNNING and self.lease_token == lease_token

    def finish(self, status: OpStatus, now: float) -> None:
        self.status = status
        self.finished_at = now
        self.lease_expires_at = None

    def to_operation(self) -> Operation:
        return Operation(
            id=self.id, job_id=self.job_id, seq=self.seq, queue=self.queue, task=self.task,
            args=copy.deepcopy(self.args), key=self.key, priority=self.priority,
            status=self.status, attempts=self.attempts, max_attempts=self.max_attempts,
            timeout_s=self.timeout_s, result=copy.deepcopy(self.result), error=self.error,
            created_at=self.created_at, run_at=self.run_at, started_at=self.started_at,
            finished_at=self.finished_at, worker_id=self.worker_id,
            cancel_requested=self.cancel_requested,
        )

    def to_claim(self) -> Claim:
        return Claim(
            op_id=self.id, job_id=self.job_id, queue=self.queue, task=self.task,
            args=copy.deepcopy(self.args), key=self.key, attempt=self.attempts,
            max_attempts=self.max_attempts, timeout_s=self.timeout_s,
            lease_token=self.lease_token, created_at=self.created_at,
            headers=dict(self.headers),
        )


@dataclass
class _Job:
    id: str
    tenant: str
    queue: str
    metadata: dict[str, JSON]
    idempotency_key: str | None
    request_hash: str | None
    created_at: float
    ops: list[_Op] = field(default_factory=list)

    def status(self) -> JobStatus:
        started = any(op.attempts > 0 or op.started_at is not None for op in self.ops)
        return job_status([op.status for op in self.ops], started)

    def to_job(self) -> Job:
        return Job(
            id=self.id, queue=self.queue, tenant=self.tenant, status=self.status(),
            metadata=copy.deepcopy(self.metadata), created_at=self.created_at,
            operations=tuple(op.to_operation() for op in self.ops),
            idempotency_key=self.idempotency_key,
        )


def _claim_order(ops: Iterable[_Op]) -> list[_Op]:
    return sorted(ops, key=lambda op: (-op.priority, op.seq))


class MemoryStore:
    """The store port in memory; one ``asyncio.Lock`` makes each call atomic."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = asyncio.Lock()
        self._closed = False
        self._jobs: dict[str, _Job] = {}
        self._ops: dict[str, _Op] = {}  # insertion order is seq order
        self._idempotency: dict[tuple[str, str], str] = {}
        self._tasks: dict[str, TaskInfo] = {}
        self._workers: dict[str, WorkerInfo] = {}
        self._seq = 0
        self._keys: dict[str, ApiKey] = {}

    def _check_open(self) -> None:
        if self._closed:
            raise StoreUnavailable("the memory store is closed")

    # lifecycle -------------------------------------------------------------------------
    async def open(self) -> None:
        self._closed = False

    async def close(self) -> None:
        self._closed = True

    async def migrate(self) -> int:
        return SCHEMA_VERSION

    async def ping(self) -> None:
        self._check_open()

    async def now(self) -> float:
        return self._clock()

    # submission and reads --------------------------------------------------------------
    async def insert_jobs(
        self, jobs: Sequence[NewJob], *, return_jobs: bool = False
    ) -> list[Submitted]:
        """All or nothing: the batch is staged first and merged only if every job fits."""
        async with self._lock:
            self._check_open()
            now = self._clock()
            staged: dict[str, _Job] = {}
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
                job = _Job(new.id, new.tenant, new.queue, _json_copy(new.metadata),
                           new.idempotency_key, new.request_hash, now)
                headers: dict[str, str] = _json_copy(new.headers)
                for op in new.operations:
                    seq += 1
                    job.ops.append(_Op(
                        id=new_id(), job_id=job.id, seq=seq, tenant=new.tenant,
                        queue=new.queue, task=op.task, args=_json_copy(op.args), key=op.key,
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

    def _visible(self, job_id: str, tenant: str | None) -> _Job | None:
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
    def _matches(op: _Op, flt: OpFilter) -> bool:
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

    # worker side -----------------------------------------------------------------------
    def _lease(self, op: _Op, worker_id: str, lease_s: float, now: float) -> None:
        op.status = OpStatus.RUNNING
        op.attempts += 1
        op.lease_token += 1
        op.worker_id = worker_id
        op.started_at = now
        op.lease_expires_at = now + lease_s

    def _key_heads(self, queues: set[str]) -> set[str]:
        """Ids of the keyed operations that per-key order lets run now: per (queue, key),
        the earliest open operation, if it is waiting (a running one blocks its key)."""
        first_open: dict[tuple[str, str], _Op] = {}
        blocked: set[tuple[str, str]] = set()
        for op in self._ops.values():  # seq order
            if op.key is None or op.queue not in queues or op.status not in OPEN:
                continue
            group = (op.queue, op.key)
            if op.status is OpStatus.RUNNING:
                blocked.add(group)
            first_open.setdefault(group, op)
        return {op.id for group, op in first_open.items()
                if group not in blocked and op.status in WAITING}

    async def claim(
        self, queues: Sequence[str], worker_id: str, limit: int, lease_s: float
    ) -> list[Claim]:
        async with self._lock:
            self._check_open()
            now = self._clock()
            wanted = set(queues)
            if limit <= 0 or not wanted:
                return []
            heads = self._key_heads(wanted)
            ready = [
                op for op in self._ops.values()
                if op.queue in wanted and op.status in WAITING and op.run_at <= now
                and (op.key is None or op.id in heads)
            ]
            chosen = _claim_order(ready)[:limit]
            for op in chosen:
                self._lease(op, worker_id, lease_s, now)
            return [op.to_claim() for op in chosen]

    async def claim_ids(self, op_ids: Sequence[str], worker_id: str, lease_s: float) -> list[Claim]:
        async with self._lock:
            self._check_open()
            now = self._clock()
            found = (self._ops.get(i) for i in dict.fromkeys(op_ids))
            ready = [op for op in found
                     if op is not None and op.status in WAITING and op.run_at <= now]
            chosen = _claim_order(ready)
            for op in chosen:
                self._lease(op, worker_id, lease_s, now)
            return [op.to_claim() for op in chosen]

    async def extend_leases(self, leases: Sequence[Lease], lease_s: float) -> list[LeaseState]:
        async with self._lock:
            self._check_open()
            now = self._clock()
            states: list[LeaseState] = []
            for lease in leases:
                op = self._ops.get(lease.op_id)
                if op is None or not op.held_by(lease.lease_token):
                    states.append(LeaseState(lease.op_id, held=False, cancel_requested=False))
                    continue
                op.lease_expires_at = now + lease_s
                states.append(LeaseState(lease.op_id, held=True,
                                         cancel_requested=op.cancel_requested))
            return states

    async def complete_many(self, outcomes: Sequence[Outcome]) -> list[bool]:
        async with self._lock:
            self._check_open()
            now = self._clock()
            accepted: list[bool] = []
            for out in outcomes:
                op = self._ops.get(out.op_id)
                if op is None or not op.held_by(out.lease_token):
                    accepted.append(False)
                    continue
                accepted.append(True)
                if out.kind is OutcomeKind.SUCCEEDED:
                    op.result = _json_copy(out.result)
                    op.error = None
                    op.finish(OpStatus.SUCCEEDED, now)
                elif out.kind is OutcomeKind.RETRY:
                    op.error = out.error
                    op.run_at = now + out.retry_in_s
                    op.lease_expires_at = None
                    if op.cancel_requested:  # the job was cancelled meanwhile
                        op.finish(OpStatus.CANCELLED, now)
                    else:
                        op.status = OpStatus.RETRYING
                elif out.kind is OutcomeKind.DEAD:
                    op.error = out.error
                    op.finish(OpStatus.DEAD, now)
                else:
                    op.error = out.error
                    op.finish(OpStatus.CANCELLED, now)
            return accepted

    async def release(self, leases: Sequence[Lease]) -> int:
        """Back to ``queued`` with the attempt uncounted (``cancelled`` if cancel was
        requested meanwhile); the lease token stays spent."""
        async with self._lock:
            self._check_open()
            now = self._clock()
            released = 0
            for lease in leases:
                op = self._ops.get(lease.op_id)
                if op is None or not op.held_by(lease.lease_token):
                    continue
                released += 1
                op.attempts -= 1
                op.run_at = now
                op.worker_id = None
                if op.cancel_requested:
                    op.finish(OpStatus.CANCELLED, now)
                else:
                    op.status = OpStatus.QUEUED
                    op.lease_expires_at = None
            return released

    async def rescue_expired(self, limit: int) -> list[str]:
        async with self._lock:
            self._check_open()
            now = self._clock()
            rescued: list[str] = []
            for op in self._ops.values():
                if len(rescued) >= limit:
                    break
                if op.status is not OpStatus.RUNNING or op.lease_expires_at is None or (
                    op.lease_expires_at >= now
                ):
                    continue
                rescued.append(op.id)
                op.run_at = now
                op.worker_id = None
                if op.cancel_requested:
                    op.finish(OpStatus.CANCELLED, now)
                elif op.attempts >= op.max_attempts:
                    op.error = ErrorInfo(
                        "LeaseExpired",
                        f"the worker holding the lease stopped responding (attempt {op.attempts})",
                    )
                    op.finish(OpStatus.DEAD, now)
                else:
                    op.status = OpStatus.QUEUED
                    op.lease_expires_at = None
            return rescued

    # registry --------------------------------------------------------------------------
    async def upsert_tasks(self, tasks: Sequence[TaskInfo]) -> None:
        async with self._lock:
            self._check_open()
            for info in tasks:
                self._tasks[info.name] = TaskInfo(
                    name=info.name, queue=info.queue, schema=_json_copy(info.schema),
                    kind=info.kind, max_attempts=info.max_attempts, timeout_s=info.timeout_s,
                    priority=info.priority, doc=info.doc,
                )

    async def list_tasks(self) -> list[TaskInfo]:
        """By name."""
        async with self._lock:
            self._check_open()
            return [
                TaskInfo(t.name, t.queue, copy.deepcopy(t.schema), t.kind, t.max_attempts,
                         t.timeout_s, t.priority, t.doc)
                for _, t in sorted(self._tasks.items())
            ]

    async def upsert_workers(self, workers: Sequence[WorkerInfo]) -> None:
        async with self._lock:
            self._check_open()
            now = self._clock()
            for w in workers:
                self._workers[w.id] = dataclasses.replace(w, last_seen_at=now)

    async def list_workers(self, include_gone: bool = False) -> list[WorkerInfo]:
        async with self._lock:
            self._check_open()
            return [w for _, w in sorted(self._workers.items())
                    if include_gone or w.status == "live"]

    async def expire_workers(self, timeout_s: float, forget_after_s: float) -> list[str]:
        async with self._lock:
            self._check_open()
            now = self._clock()
            for old in [w.id for w in self._workers.values()
                        if w.status == "gone" and w.last_seen_at < now - forget_after_s]:
                del self._workers[old]
            gone = [w.id for w in self._workers.values()
                    if w.status == "live" and w.last_seen_at < now - timeout_s]
            for worker_id in gone:
                self._workers[worker_id] = dataclasses.replace(self._workers[worker_id],
                                                               status="gone")
            for op in self._ops.values():
                if op.status is OpStatus.RUNNING and op.worker_id in gone:
                    op.lease_expires_at = now - 0.001
            return sorted(gone)

    # API keys --------------------------------------------------------------------------
    async def insert_keys(self, keys: Sequence[ApiKey]) -> None:
        async with self._lock:
            self._check_open()
            ids = [k.id for k in keys]
            if len(set(ids)) != len(ids) or any(i in self._keys for i in ids):
                raise ValueError("an API key with this id already exists")
            now = self._clock()
            for k in keys:
                self._keys[k.id] = dataclasses.replace(k, created_at=now, revoked_at=None)

    async def get_keys(self, ids: Sequence[str]) -> list[ApiKey]:
        async with self._lock:
            self._check_open()
            return [self._keys[i] for i in dict.fromkeys(ids) if i in self._keys]

    async def list_keys(self, tenant: str | None = None) -> list[ApiKey]:
        async with self._lock:
            self._check_open()
            return sorted((k for k in self._keys.values() if tenant in (None, k.tenant)),
                          key=lambda k: (k.created_at, k.id))

    async def revoke_keys(self, ids: Sequence[str]) -> list[str]:
        async with self._lock:
            self._check_open()
            now = self._clock()
            found = [i for i in dict.fromkeys(ids) if i in self._keys]
            for i in found:
                if self._keys[i].revoked_at is None:
                    self._keys[i] = dataclasses.replace(self._keys[i], revoked_at=now)
            return found


__all__ = ["SCHEMA_VERSION", "MemoryStore"]
