"""The worker: receives leased operations, runs them, and records each outcome once.

Guarantees, with the store's fencing:

* Every attempt's outcome is written with its lease token; a late outcome of a lease that
  was lost (a stall, a partition) is refused by the store, never recorded twice. Outcomes
  are written in batches (:mod:`.outcomes`).
* Leases of in-flight operations are renewed every ``lease_s / 3``; an operation whose
  lease is lost, or whose job is cancelled, is interrupted.
* ``def`` tasks run on the process pool and are killed at ``timeout_s``; ``async def``
  tasks run on the event loop and are cancelled at ``timeout_s``. Either way the attempt
  fails with ``TaskTimeout`` and follows the retry policy.
* At most ``concurrency`` attempts run at once. An attempt that has finished no longer
  counts while its outcome is being written, so the next claim overlaps that write; at
  most ``2 * concurrency + claim_ahead`` leases are held in all, finished attempts
  awaiting their record included. On a store whose claims overtake its other writes
  (SQLite, :class:`~conveyor.store.base.ClaimsFirst`) that is ``3 * concurrency +
  claim_ahead``: one batch being written, the next waiting for it, a third running.
* Up to ``claim_ahead`` more operations are claimed ahead and wait, in claim order, for a
  free slot: the next claim is written while the attempts on hand run, and a slot that
  frees starts a waiting operation without a round trip. Their leases are renewed like
  the running ones; a waiting operation whose job is cancelled is recorded cancelled
  without running, one whose lease was lost is dropped.
* On stop, no new work is taken and waiting operations are released unstarted; in-flight
  operations get ``shutdown_grace_s`` to finish, the rest are interrupted and their
  leases released, so they run again at once elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import socket
import time
from collections import deque
from dataclasses import dataclass, field

from .. import __version__
from ..config import Config
from ..errors import StoreUnavailable, TaskTimeout
from ..model import Claim, Lease, Outcome, WorkerInfo, new_id
from ..observability.logging import log_context
from ..observability.metrics import Metrics
from ..observability.tracing import Tracing
from ..retry import Failure, RetryPolicy, classify
from ..store.base import ClaimsFirst, Store
from ..tasks import Context, Registry, TaskSpec
from ..transport.base import Transport
from .maintenance import Rescuer
from .outcomes import OutcomeWriter, WorkerCounters
from .pool import PoolTaskError, ProcessPool

log = logging.getLogger("conveyor.worker")


@dataclass
class _InFlight:
    claim: Claim
    task: asyncio.Task[None] | None = None
    interrupt: str | None = None  # "cancelled" | "lost" | "shutdown" | "timeout"
    started_s: float = field(default_factory=time.monotonic)


class Worker:
    """One worker process's runtime. ``run`` until ``request_stop``."""

    def __init__(
        self,
        config: Config,
        store: Store,
        transport: Transport,
        registry: Registry,
        *,
        policy: RetryPolicy | None = None,
        worker_id: str | None = None,
        metrics: Metrics | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.transport = transport
        self.registry = registry
        self.policy = policy or RetryPolicy(config.retry_base_s, config.retry_cap_s)
        self.id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{new_id()[-6:]}"
        self.queues = list(config.queues) or sorted({"default", *registry.queues()})
        self.counters = WorkerCounters()
        self.metrics = metrics or Metrics()
        self.tracing = tracing or Tracing()
        self.pool: ProcessPool | None = None
        self._inflight: dict[str, _InFlight] = {}
        self._running = 0  # attempts started and not finished (outcome not yet known)
        self._waiting: deque[_InFlight] = deque()  # claimed ahead, not started, in order
        self._start_soon = False  # a call of _start is scheduled
        self._capacity = asyncio.Event()
        self._stopping = asyncio.Event()
        self._outcomes = OutcomeWriter(
            store, transport, self.metrics, self.counters, linger_s=config.outcome_linger_s,
            lingering=self._lingering, settle=self._settle)
        self._flusher: asyncio.Task[None] | None = None
        self._rescuer = Rescuer(store, transport, config.rescue_interval_s,
                                worker_timeout_s=config.worker_timeout_s,
                                gone_worker_retention_s=config.gone_worker_retention_s)
        self._started_at = time.time()
        claims_first = isinstance(store, ClaimsFirst) and store.claims_first
        self._record_batches = 2 if claims_first else 1
        """Batches of finished attempts that may await their record while the next
        batch is claimed: one is written, a second waits for it behind the claim."""

    # lifecycle -------------------------------------------------------------------------
    def request_stop(self) -> None:
        """Stop taking work; ``run`` returns once in-flight work is finished or released."""
        self._stopping.set()
        self._capacity.set()

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    async def publish_tasks(self) -> None:
        """Publish this worker's tasks and schemas so API processes can validate them, and
        register the worker."""
        await self.store.upsert_tasks(self.registry.infos())
        await self.store.upsert_workers([self.registration()])

    def config_hash(self) -> str:
        """A fingerprint of what must agree between workers of a queue: the tasks with
        their options and schemas, leases and retry settings."""
        effective = {
            "tasks": sorted((t.to_json() for t in self.registry.infos()),
                            key=lambda t: str(t["name"])),
            "lease_s": self.config.lease_s,
            "retry": [self.config.retry_base_s, self.config.retry_cap_s],
        }
        return hashlib.sha256(json.dumps(effective, sort_keys=True).encode()).hexdigest()[:16]

    def registration(self, status: str = "live") -> WorkerInfo:
        c = self.counters
        return WorkerInfo(
            id=self.id, host=socket.gethostname(), pid=os.getpid(), queues=tuple(self.queues),
            concurrency=self.config.concurrency, version=__version__,
            config_hash=self.config_hash(), started_at=self._started_at,
            in_flight=len(self._inflight),
            processed=c.succeeded + c.retried + c.dead + c.cancelled, status=status,
        )

    async def run(self) -> None:
        await self._until_store_answers(self.publish_tasks)
        if any(not spec.is_async for spec in self.registry):
            self.pool = ProcessPool(self.config.processes, self.config.tasks)
            await self.pool.start()
        # Heartbeats start before the transport does: a worker still waiting for its
        # broker stays listed as live (it holds no leases until it receives work).
        background = [
            asyncio.create_task(self._heartbeat()),
            asyncio.create_task(self._rescuer.run(self._stopping)),
        ]
        try:
            await self.transport.start(self.queues, self.id)
            if not self._stopping.is_set():
                log.info("worker %s serving queues %s", self.id, ",".join(self.queues))
            self._flusher = asyncio.create_task(
                self._outcomes.run(idle=lambda: not self._inflight))
            await self._receive_loop()
            await self._drain()
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            self._outcomes.finish()
            self._stopping.set()
            if self._flusher is not None:
                await self._flusher
            if self.pool is not None:
                await self.pool.close()
            await self.transport.close()
            with contextlib.suppress(StoreUnavailable):  # else the others expire it
                await self.store.upsert_workers([self.registration("gone")])
            log.info("worker %s stopped", self.id)

    async def _until_store_answers(self, action: object) -> None:
        delay_s = 0.2
        while not self._stopping.is_set():
            try:
                await action()  # type: ignore[operator]
                return
            except StoreUnavailable as exc:
                log.warning("store unavailable (%s); retrying in %.1f s", exc, delay_s)
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, 5.0)

    # receiving -------------------------------------------------------------------------
    def _free(self) -> int:
        """Operations this worker may claim now: ``concurrency`` running plus
        ``claim_ahead`` waiting at most, and at most ``(1 + batches) * concurrency +
        claim_ahead`` leases held: those, plus finished attempts awaiting their record
        (``batches`` of them, see ``_record_batches``)."""
        c, ahead = self.config.concurrency, self.config.claim_ahead
        return min(c + ahead - self._running - len(self._waiting),
                   (1 + self._record_batches) * c + ahead - len(self._inflight))

    async def _receive_loop(self) -> None:
        backoff_s = 0.2
        # Refill in chunks: claiming one operation per finished one costs a transaction
        # each; a quarter of the concurrency keeps every slot busy with far fewer claims.
        refill = max(1, min(self.config.concurrency, self.config.claim_batch) // 4)
        while not self._stopping.is_set():
            free = self._free()
            if free < refill and (free <= 0 or self._running + len(self._waiting) > 0):
                self._capacity.clear()
                await self._capacity.wait()
                continue
            try:
                claims = await self.transport.receive(
                    min(free, self.config.claim_batch), self.config.lease_s, wait_s=1.0
                )
                backoff_s = 0.2
            except StoreUnavailable as exc:
                log.warning("cannot receive work (%s); retrying in %.1f s", exc, backoff_s)
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, 5.0)
                continue
            if claims:
                self._take(claims)
                self._start()

    def _take(self, claims: list[Claim]) -> None:
        """Hold these leases: each operation waits in line for a slot."""
        per_task: dict[tuple[str, str], int] = {}
        for claim in claims:
            entry = _InFlight(claim)
            self._inflight[claim.op_id] = entry
            self._waiting.append(entry)
            k = (claim.queue, claim.task)
            per_task[k] = per_task.get(k, 0) + 1
        for (queue, task), n in per_task.items():
            self.metrics.for_task(queue, task).in_flight.inc(n)

    def _start(self) -> None:
        """Start waiting operations, oldest first, in the slots free now."""
        self._start_soon = False
        free = self.config.concurrency - self._running
        if free <= 0 or not self._waiting or self._stopping.is_set():
            return
        now_s, started_s = time.time(), time.monotonic()
        # One loop lookup per batch: on Python 3.11 each lookup is a getpid() system call.
        loop = asyncio.get_running_loop()
        per_task: dict[tuple[str, str], int] = {}
        n = 0
        while n < free and self._waiting:
            entry = self._waiting.popleft()
            claim = entry.claim
            if self._inflight.get(claim.op_id) is not entry:
                continue  # its lease was lost and it was claimed again: that claim runs it
            n += 1
            entry.started_s = started_s
            entry.task = loop.create_task(self._attempt(entry))
            k = (claim.queue, claim.task)
            per_task[k] = per_task.get(k, 0) + 1
            if claim.attempt == 1:
                self.metrics.for_task(*k).start_latency.observe(
                    max(0.0, now_s - claim.created_at))
        for (queue, task), count in per_task.items():
            self.metrics.for_task(queue, task).started.inc(count)
        self._running += n
        self.counters.started += n

    async def _drain(self) -> None:
        """Shutdown: release what never started, let in-flight work finish within the grace
        period, release the rest."""
        waiting, self._waiting = list(self._waiting), deque()
        await self._release([e.claim for e in waiting], "waiting")
        tasks = [e.task for e in self._inflight.values() if e.task is not None]
        if tasks:
            log.info("waiting up to %.0f s for %d operations", self.config.shutdown_grace_s,
                     len(tasks))
            await asyncio.wait(tasks, timeout=self.config.shutdown_grace_s)
        # Attempts that finished have outcomes waiting for the flusher: those are recorded,
        # never released. Only attempts still running are interrupted and released.
        leftover = [e for e in self._inflight.values() if e.task is not None and not e.task.done()]
        for entry in leftover:
            entry.interrupt = "shutdown"
            if entry.task is not None:
                entry.task.cancel()
        await asyncio.gather(*(e.task for e in leftover if e.task), return_exceptions=True)
        await self._release([e.claim for e in leftover], "interrupted")

    async def _release(self, claims: list[Claim], what: str) -> None:
        """Give these leases back so the operations run again at once, elsewhere."""
        if not claims:
            return
        for claim in claims:  # no longer held here (a no-op for attempts that ended)
            self._finish(claim.op_id)
        try:
            released = await self.store.release([Lease(c.op_id, c.lease_token) for c in claims])
            await self.transport.ack(claims)
            log.info("released %d %s operations to run again elsewhere", released, what)
        except StoreUnavailable as exc:
            log.warning("could not release leases (%s); they expire by themselves", exc)

    # running one attempt ---------------------------------------------------------------
    async def _attempt(self, entry: _InFlight) -> None:
        claim = entry.claim
        try:
            with log_context(job_id=claim.job_id, op_id=claim.op_id, attempt=claim.attempt,
                             task=claim.task, worker_id=self.id,
                             trace_id=trace_id_of(claim)):
                if not self.tracing.enabled:
                    outcome = await self._run_attempt(entry)
                    if outcome is not None:
                        self._record(outcome, claim)
                    return
                with self.tracing.attempt(claim, self.id) as span:
                    outcome = await self._run_attempt(entry)
                    if outcome is not None:
                        self.tracing.record_outcome(
                            span, outcome.kind.value,
                            outcome.error.type if outcome.error else None)
                        self._record(outcome, claim)
        finally:
            self._running -= 1
            self._capacity.set()
            if self._waiting and not self._start_soon:
                # Once per loop turn, for every slot freed in it: starts are batched.
                self._start_soon = True
                asyncio.get_running_loop().call_soon(self._start)

    async def _run_attempt(self, entry: _InFlight) -> Outcome | None:
        """The attempt's outcome, or None when it was interrupted without one (lost lease,
        shutdown): then the lease's next holder owns the outcome."""
        claim = entry.claim
        spec = self.registry.get(claim.task)
        try:
            if spec is None:
                raise LookupError(f"this worker does not know task {claim.task!r}")
            result = await self._execute(spec, claim)
            outcome = Outcome.succeeded(claim, result)
        except asyncio.CancelledError:
            if entry.interrupt == "cancelled":
                outcome = Outcome.cancelled(claim)
            else:  # lost lease or shutdown: someone else owns the outcome now
                self._finish(claim.op_id)
                if entry.interrupt is None:
                    raise
                if entry.interrupt == "lost":
                    await self._lost([claim])
                return None
        except PoolTaskError as exc:
            outcome = self._failed(claim, exc.failure)
        except Exception as exc:
            permanent = spec.options.permanent if spec else ()
            outcome = self._failed(claim, classify(exc, permanent))
        return outcome

    async def _execute(self, spec: TaskSpec, claim: Claim) -> object:
        if not spec.is_async:
            assert self.pool is not None
            return await self.pool.run(spec.name, claim.args, _context_of(claim),
                                       claim.timeout_s)
        kwargs = dict(claim.args)
        if spec.context_param:
            kwargs[spec.context_param] = _context_of(claim)
        if claim.timeout_s is None:
            return await spec.fn(**kwargs)
        # A timer that cancels this task, rather than asyncio.wait_for (which wraps the
        # call in one more task): the same hard timeout at a fraction of the cost.
        entry = self._inflight.get(claim.op_id)
        task = entry.task if entry is not None else None  # the task running this attempt
        timer = task.get_loop().call_later(
            claim.timeout_s, self._interrupt, entry, "timeout") if entry and task else None
        try:
            return await spec.fn(**kwargs)
        except asyncio.CancelledError:
            if entry is None or entry.interrupt != "timeout":
                raise
            entry.interrupt = None
            if task is not None:
                task.uncancel()
            raise TaskTimeout(
                f"{spec.name} ran past its timeout of {claim.timeout_s:g} s"
            ) from None
        finally:
            if timer is not None:
                timer.cancel()

    def _failed(self, claim: Claim, failure: Failure) -> Outcome:
        decision = self.policy.decide(failure, claim.attempt, claim.max_attempts)
        error = failure.error
        if decision.retry_in_s is None:
            log.error("operation dead after attempt %d/%d: %s: %s", claim.attempt,
                      claim.max_attempts, error.type, error.message)
            return Outcome.dead(claim, error)
        log.warning("attempt %d/%d failed (%s: %s); retry in %.2f s", claim.attempt,
                    claim.max_attempts, error.type, error.message, decision.retry_in_s)
        return Outcome.retry(claim, error, decision.retry_in_s)

    def _record(self, outcome: Outcome, claim: Claim) -> None:
        self._outcomes.record(outcome, claim)

    def _lingering(self) -> bool:
        """Outcomes may wait to share a write: the pool sets the pace (see
        :mod:`.outcomes`)."""
        return self.pool is not None and self.pool.saturated and not self._stopping.is_set()

    def _settle(self, op_id: str) -> float | None:
        """An outcome of this operation was written: no longer held here. When its
        attempt started, if it was still held."""
        entry = self._inflight.pop(op_id, None)
        self._capacity.set()
        return entry.started_s if entry is not None else None

    def _finish(self, op_id: str) -> None:
        entry = self._inflight.pop(op_id, None)
        if entry is not None:
            self.metrics.for_task(entry.claim.queue, entry.claim.task).in_flight.dec()
        self._capacity.set()

    # heartbeats ------------------------------------------------------------------------
    async def _heartbeat(self) -> None:
        interval_s = self.config.lease_s / 3
        while True:
            await asyncio.sleep(interval_s)
            entries = [e for e in self._inflight.values() if e.interrupt is None]
            try:
                await self.store.upsert_workers([self.registration()])
                if not entries:
                    continue
                states = await self.store.extend_leases(
                    [Lease(e.claim.op_id, e.claim.lease_token) for e in entries],
                    self.config.lease_s,
                )
            except StoreUnavailable as exc:
                log.warning("heartbeat failed (%s)", exc)
                continue
            lost: list[_InFlight] = []
            cancelled: list[_InFlight] = []
            for entry, state in zip(entries, states, strict=True):
                if entry.task is None:  # still waiting: settled without running
                    if not state.held:
                        lost.append(entry)
                    elif state.cancel_requested:
                        cancelled.append(entry)
                elif not state.held:
                    self._interrupt(entry, "lost")
                elif state.cancel_requested:
                    self._interrupt(entry, "cancelled")
            if lost or cancelled:
                await self._settle_waiting(lost, cancelled)

    async def _settle_waiting(self, lost: list[_InFlight], cancelled: list[_InFlight]) -> None:
        """Take waiting operations out of line: a cancelled one's outcome is recorded, one
        whose lease was lost is the store's again (and is re-dispatched by it)."""
        gone = {id(e) for e in (*lost, *cancelled)}
        self._waiting = deque(e for e in self._waiting if id(e) not in gone)
        for entry in cancelled:
            entry.interrupt = "cancelled"  # settled: later heartbeats leave it alone
            self._record(Outcome.cancelled(entry.claim), entry.claim)
        for entry in lost:
            entry.interrupt = "lost"
            self._finish(entry.claim.op_id)
        if lost:
            await self._lost([e.claim for e in lost])

    async def _lost(self, claims: list[Claim]) -> None:
        """The store owns these operations again (and re-dispatches them): done with their
        delivery here. A Kafka message left open would hold back every later message of
        its key, the re-dispatched one included."""
        await self.transport.ack(claims)
        await self.transport.wake()

    @staticmethod
    def _interrupt(entry: _InFlight, reason: str) -> None:
        if entry.interrupt is None and entry.task is not None and not entry.task.done():
            entry.interrupt = reason
            entry.task.cancel()


def _context_of(claim: Claim) -> Context:
    return Context(claim.op_id, claim.job_id, claim.queue, claim.key, claim.attempt,
                   claim.max_attempts)


def trace_id_of(claim: Claim) -> str | None:
    """The W3C trace id carried with an operation, if it was submitted inside a trace."""
    if not claim.headers:
        return None
    parent = claim.headers.get("traceparent", "")
    parts = parent.split("-")
    return parts[1] if len(parts) == 4 else None
