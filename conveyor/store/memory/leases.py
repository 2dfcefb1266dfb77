"""The worker side of the memory store: claims, leases, outcomes, rescue."""

from __future__ import annotations

from collections.abc import Sequence

from ...model import (
    OPEN,
    WAITING,
    Claim,
    ErrorInfo,
    Lease,
    LeaseState,
    OpStatus,
    Outcome,
    OutcomeKind,
)
from .core import MemoryCore
from .records import OpRow, claim_order, json_copy


class LeaseMixin(MemoryCore):
    """Claims and everything a lease's holder writes; fenced by ``lease_token``."""

    def _lease(self, op: OpRow, worker_id: str, lease_s: float, now: float) -> None:
        op.status = OpStatus.RUNNING
        op.attempts += 1
        op.lease_token += 1
        op.worker_id = worker_id
        op.started_at = now
        op.lease_expires_at = now + lease_s

    def _key_heads(self, queues: set[str]) -> set[str]:
        """Ids of the keyed operations that per-key order lets run now: per (queue, key),
        the earliest open operation, if it is waiting (a running one blocks its key)."""
        first_open: dict[tuple[str, str], OpRow] = {}
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
            chosen = claim_order(ready)[:limit]
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
            chosen = claim_order(ready)
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
                    op.result = json_copy(out.result)
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
