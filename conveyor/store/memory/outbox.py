"""The in-memory store with the outbox capability, for unit tests of log transports and
the relay (:class:`conveyor.store.base.OutboxStore` and ``OutboxSignal``, the same
conformance suite as PostgreSQL).

Rows are written the way PostgreSQL's triggers write them: every state-changing call runs
under one lock, the operations' ``(status, run_at)`` are compared before and after, and
each operation that became ready (or moved its ``run_at`` while ready) gets a
``dispatch`` row due at its ``run_at``; each that became dead a ``dead`` row. O(n) per
call: a test double, not a production store.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from ...model import (
    WAITING,
    Claim,
    Lease,
    NewJob,
    OpFilter,
    OpStatus,
    Outcome,
    Submitted,
)
from ...waiting import wait_event
from ..base import Delivered, OutboxEntry
from .store import MemoryStore

T = TypeVar("T")


@dataclass
class _Row:
    id: int
    op_id: str
    queue: str
    key: str | None
    kind: str
    due_at: float
    claimed_until: float | None = None


class MemoryOutboxStore(MemoryStore):
    """:class:`MemoryStore` plus the outbox (disabled until :meth:`enable_outbox`)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        super().__init__(clock)
        self._outbox: dict[int, _Row] = {}
        self._next_row = 0
        self._enabled = False
        self._changes = asyncio.Lock()
        self._written = asyncio.Event()
        self._written.set()  # the first wait_outbox returns at once

    # the "triggers" ----------------------------------------------------------------------
    def _add(self, op_id: str, kind: str, due_at: float) -> None:
        op = self._ops[op_id]
        self._next_row += 1
        self._outbox[self._next_row] = _Row(self._next_row, op_id, op.queue, op.key, kind,
                                            due_at)
        self._written.set()

    async def _tracked(self, call: Callable[[], Awaitable[T]]) -> T:
        async with self._changes:
            before = {i: (op.status, op.run_at) for i, op in self._ops.items()}
            result = await call()
            if self._enabled:
                now = self._clock()
                for op in self._ops.values():  # seq order
                    prev = before.get(op.id)
                    if op.status in WAITING and (
                            prev is None or prev[0] not in WAITING or prev[1] != op.run_at):
                        self._add(op.id, "dispatch", op.run_at)
                    elif op.status is OpStatus.DEAD and prev is not None and (
                            prev[0] is not OpStatus.DEAD):
                        self._add(op.id, "dead", now)
            return result

    async def insert_jobs(
        self, jobs: Sequence[NewJob], *, return_jobs: bool = False
    ) -> list[Submitted]:
        return await self._tracked(lambda: super(MemoryOutboxStore, self).insert_jobs(
            jobs, return_jobs=return_jobs))

    async def replay(self, flt: OpFilter) -> list[str]:
        return await self._tracked(lambda: super(MemoryOutboxStore, self).replay(flt))

    async def complete_many(self, outcomes: Sequence[Outcome]) -> list[bool]:
        return await self._tracked(
            lambda: super(MemoryOutboxStore, self).complete_many(outcomes))

    async def release(self, leases: Sequence[Lease]) -> int:
        return await self._tracked(lambda: super(MemoryOutboxStore, self).release(leases))

    async def rescue_expired(self, limit: int) -> list[str]:
        return await self._tracked(
            lambda: super(MemoryOutboxStore, self).rescue_expired(limit))

    async def cancel_jobs(self, ids: Sequence[str], tenant: str | None = None) -> list[str]:
        return await self._tracked(
            lambda: super(MemoryOutboxStore, self).cancel_jobs(ids, tenant))

    async def claim(self, queues: Sequence[str], worker_id: str, limit: int,
                    lease_s: float) -> list[Claim]:
        return await self._tracked(
            lambda: super(MemoryOutboxStore, self).claim(queues, worker_id, limit, lease_s))

    async def claim_ids(self, op_ids: Sequence[str], worker_id: str,
                        lease_s: float) -> list[Claim]:
        return await self._tracked(
            lambda: super(MemoryOutboxStore, self).claim_ids(op_ids, worker_id, lease_s))

    # the OutboxStore capability ---------------------------------------------------------
    async def enable_outbox(self) -> None:
        async with self._changes:
            if self._enabled:
                return
            self._enabled = True
            have = {r.op_id for r in self._outbox.values()}
            for op in self._ops.values():
                if op.status in WAITING and op.id not in have:
                    self._add(op.id, "dispatch", op.run_at)

    async def claim_outbox(self, limit: int, lease_s: float) -> list[OutboxEntry]:
        async with self._changes:
            self._check_open()
            now = self._clock()
            due = [r for r in self._outbox.values() if r.due_at <= now
                   and (r.claimed_until is None or r.claimed_until < now)][:max(limit, 0)]
            entries = []
            for row in due:
                row.claimed_until = now + lease_s
                op = self._ops[row.op_id]
                payload: dict[str, Any] = {}
                if row.kind == "dead":
                    payload = {"job_id": op.job_id, "task": op.task, "args": op.args,
                               "attempts": op.attempts,
                               "error": op.error.to_json() if op.error else None}
                entries.append(OutboxEntry(row.id, row.op_id, row.queue, row.key, row.kind,
                                           dict(op.headers), payload))
            return entries

    async def mark_published(self, ids: Sequence[int]) -> None:
        async with self._changes:
            for i in ids:
                self._outbox.pop(i, None)

    async def outbox_backlog(self) -> dict[str, int]:
        async with self._changes:
            now = self._clock()
            out: dict[str, int] = {}
            for row in self._outbox.values():
                if row.due_at <= now:
                    out[row.queue] = out.get(row.queue, 0) + 1
            return out

    async def next_outbox_due_s(self) -> float | None:
        async with self._changes:
            now = self._clock()
            due = [r.due_at for r in self._outbox.values()
                   if r.claimed_until is None or r.claimed_until < now]
            return max(0.0, min(due) - now) if due else None

    async def wait_outbox(self, timeout_s: float) -> None:
        """The :class:`~conveyor.store.base.OutboxSignal` of this process's rows."""
        if not self._written.is_set():
            await wait_event(self._written, timeout_s)
        self._written.clear()

    async def claim_delivered(self, op_ids: Sequence[str], worker_id: str, lease_s: float,
                              park_s: float) -> Delivered:
        async with self._changes:
            self._check_open()
            now = self._clock()
            found = [self._ops[i] for i in dict.fromkeys(op_ids) if i in self._ops]
            ready = [op for op in found if op.status in WAITING and op.run_at <= now]
            heads = self._key_heads({op.queue for op in ready})
            claims, parked = [], []
            for op in ready:
                if op.key is None or op.id in heads:
                    self._lease(op, worker_id, lease_s, now)
                    claims.append(op.to_claim())
                    continue
                earlier = [p.run_at for p in self._ops.values()
                           if p.queue == op.queue and p.key == op.key and p.seq < op.seq
                           and p.status in WAITING]
                self._add(op.id, "dispatch", max([now, *earlier]) + park_s)
                parked.append(op.id)
            return Delivered(claims, parked)

    async def reconcile_outbox(self, queue: str, older_than_s: float, limit: int) -> list[str]:
        async with self._changes:
            now = self._clock()
            have = {r.op_id for r in self._outbox.values() if r.kind == "dispatch"}
            lost = [op for op in self._ops.values()
                    if op.queue == queue and op.status in WAITING
                    and op.run_at <= now - older_than_s and op.id not in have][:limit]
            for op in lost:
                self._add(op.id, "dispatch", now)
            return [op.id for op in lost]


__all__ = ["MemoryOutboxStore"]
