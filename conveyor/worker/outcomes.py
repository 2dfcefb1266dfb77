"""Recording outcomes: a worker's finished attempts written to the store in batches.

Guarantees:

* Every outcome given to :meth:`OutcomeWriter.record` is written with its lease token,
  retried while the store is unavailable, until the store accepts it or its fencing
  refuses it (the lease was lost: counted as fenced out). None is dropped; this worker
  writes none twice.
* Everything that finished while a batch was being written goes in the next one: a
  transaction per batch, not per outcome.
* While the process pool is saturated, outcomes wait up to ``linger_s`` to share a write,
  unless :data:`OUTCOME_LINGER_BATCH` are already waiting. Only in that state: otherwise
  an outcome is written as soon as the previous batch is.
* A batch's deliveries are acknowledged to the transport (Kafka: its offsets may be
  committed) only after the batch is written.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import StoreUnavailable
from ..model import Claim, Outcome, OutcomeKind
from ..observability.metrics import Metrics
from ..store.base import Store
from ..transport.base import Transport

log = logging.getLogger("conveyor.worker")

OUTCOME_LINGER_BATCH = 32
"""While the process pool is saturated, outcomes wait up to ``outcome_linger_s`` to share
a write, unless this many are already waiting."""


@dataclass
class WorkerCounters:
    """Totals since start, for the registry and metrics."""

    started: int = 0
    succeeded: int = 0
    retried: int = 0
    dead: int = 0
    cancelled: int = 0
    fenced_out: int = 0
    by_outcome: dict[str, int] = field(default_factory=dict)

    def add(self, outcome: str, n: int) -> None:
        """``n`` recorded outcomes of this kind (an :class:`OutcomeKind` value)."""
        self.by_outcome[outcome] = self.by_outcome.get(outcome, 0) + n
        if outcome == "succeeded":
            self.succeeded += n
        elif outcome == "retry":
            self.retried += n
        elif outcome == "dead":
            self.dead += n
        else:
            self.cancelled += n


class OutcomeWriter:
    """Writes outcomes in batches (see the module's guarantees).

    ``settle(op_id)`` is called once for each written outcome's operation: the worker lets
    go of it and returns when its attempt started (``time.monotonic()``), or ``None`` if
    it no longer held it. ``lingering()`` says whether outcomes may wait to share a write
    (the pool is saturated and the worker is not stopping)."""

    def __init__(self, store: Store, transport: Transport, metrics: Metrics,
                 counters: WorkerCounters, *, linger_s: float,
                 lingering: Callable[[], bool], settle: Callable[[str], float | None]) -> None:
        self._store = store
        self._transport = transport
        self._metrics = metrics
        self._counters = counters
        self._linger_s = linger_s
        self._lingering = lingering
        self._settle = settle
        self._outcomes: list[tuple[Outcome, Claim]] = []
        self._ready = asyncio.Event()
        self._finishing = False

    def record(self, outcome: Outcome, claim: Claim) -> None:
        """Write this outcome (with the next batch)."""
        self._outcomes.append((outcome, claim))
        self._ready.set()

    def finish(self) -> None:
        """No more attempts will run: :meth:`run` returns once ``idle()`` holds and
        nothing is left to write."""
        self._finishing = True
        self._ready.set()

    async def run(self, idle: Callable[[], bool]) -> None:
        """Write batches until :meth:`finish` was called, nothing is left to write and
        ``idle()`` (checked after every batch: the last wake-up may come during a write)."""
        while True:
            if not self._outcomes:
                if self._finishing and idle():
                    return
                await self._ready.wait()
            if (self._linger_s > 0 and len(self._outcomes) < OUTCOME_LINGER_BATCH
                    and self._lingering()):
                # The pool sets the pace and outcomes trickle in one by one: gather a few
                # per transaction instead of paying a commit for each (the worker's CPU
                # would come out of the pool's). Bounded delay, only in this state.
                await asyncio.sleep(self._linger_s)
            self._ready.clear()
            batch, self._outcomes = self._outcomes, []
            if batch:
                await self._write(batch)

    async def _write(self, batch: list[tuple[Outcome, Claim]]) -> None:
        delay_s = 0.1
        while True:
            try:
                accepted = await self._store.complete_many([o for o, _ in batch])
                break
            except StoreUnavailable as exc:
                log.warning("cannot record %d outcomes (%s); retrying", len(batch), exc)
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, 5.0)
        now_s = time.monotonic()
        finished: dict[tuple[str, str, str], int] = {}
        for (outcome, claim), ok in zip(batch, accepted, strict=True):
            started_s = self._settle(claim.op_id)
            if not ok:
                self._counters.fenced_out += 1
                m = self._metrics.for_task(claim.queue, claim.task)
                m.fenced.inc()
                m.in_flight.dec()
            else:
                k = (claim.queue, claim.task, outcome.kind.value)
                finished[k] = finished.get(k, 0) + 1
                if started_s is not None:
                    self._metrics.for_task(claim.queue, claim.task).duration.observe(
                        now_s - started_s)
        for (queue, task, name), n in finished.items():
            m = self._metrics.for_task(queue, task)
            m.finished[name].inc(n)
            m.in_flight.dec(n)
            self._counters.add(name, n)
        await self._transport.ack([c for _, c in batch])
        if any(c.key is not None or o.kind is OutcomeKind.RETRY for o, c in batch):
            # A finished key may have unblocked its successor, a retry may be due at
            # once. Any other outcome makes nothing ready: waking would only cost an
            # empty claim per batch while the queue is idle.
            await self._transport.wake()
