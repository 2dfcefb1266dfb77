"""The relay: publishes due outbox rows to the log transport and marks them published.

Guarantees (with :class:`conveyor.store.base.OutboxStore`):

* Nothing is lost: a row is deleted only after the publisher confirmed every message of
  its batch durable. A relay killed mid-batch leaves its claimed rows to be claimed again
  once their lease (``lease_s``) runs out, by itself after a restart or by another relay.
* Duplicates are harmless: a message points at an operation; workers lease it in the
  store, which skips it once it is running elsewhere or finished.
* Delays and backoffs never block a partition: a row is published only once due.
* Several relays may run at once (rows are claimed with ``SKIP LOCKED``); per-key order
  does not depend on it, because the store checks it when a worker leases.
* Latency: an idle relay wakes when rows are written (the store's
  :class:`~conveyor.store.base.OutboxSignal`, PostgreSQL ``LISTEN/NOTIFY``), when the
  earliest delayed row falls due, and at the latest after ``poll_s``. A missed wake-up
  (a dropped listening connection) delays publication by at most ``poll_s``; a store
  without the signal is simply polled every ``poll_s``. Inside the process that submits
  (``conveyor api --relay``), :meth:`Relay.wake` is called after each durable insert: the
  relay claims those rows without waiting for the notification (a hop through the
  database and a wake-up of its listening connection).
* Its own deletions do not slow it down: on a store with
  :class:`~conveyor.store.base.OutboxCompaction` (PostgreSQL), once it has caught up
  after publishing ``compact_after_rows`` rows or more, it has the store reclaim them,
  in the background (one compaction at a time; publication goes on meanwhile).
* Upkeep (the maintenance given, e.g. reconciliation) runs every
  ``maintenance_interval_s`` beside publication, never in its way: a slow pass (one
  that reads a large table) does not hold back the rows written meanwhile.

The relay also reconciles (see :class:`conveyor.reconcile.Reconciler`) when given one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from .errors import StoreUnavailable, TransportError
from .store.base import OutboxCompaction, OutboxSignal, OutboxStore
from .transport.base import Publisher
from .waiting import first_of, wait_event

log = logging.getLogger("conveyor.relay")


class Periodic(Protocol):
    async def run_once(self) -> object:
        """One pass of upkeep run between batches (e.g. reconciliation)."""


class Relay:
    """Moves outbox rows into the log in batches of ``batch``; ``poll_s`` is the fallback
    poll of an idle relay (see the module's guarantees)."""

    def __init__(self, outbox: OutboxStore, publisher: Publisher, *, batch: int = 500,
                 poll_s: float = 1.0, lease_s: float = 10.0,
                 maintenance: Periodic | None = None, maintenance_interval_s: float = 5.0,
                 compact_after_rows: int = 10_000,
                 closers: Sequence[Callable[[], None]] = ()) -> None:
        self._outbox = outbox
        self._signal = outbox if isinstance(outbox, OutboxSignal) else None
        self._publisher = publisher
        self._batch = batch
        self._poll_s = poll_s
        self._lease_s = lease_s
        self._maintenance = maintenance
        self._maintenance_interval_s = maintenance_interval_s
        self._closers = list(closers)
        self._compaction = outbox if isinstance(outbox, OutboxCompaction) else None
        self._compact_after_rows = compact_after_rows
        self._uncompacted_rows = 0
        self._compacting: asyncio.Task[None] | None = None
        self.published = 0
        self.batches = 0
        self.compactions = 0
        self._woken = asyncio.Event()
        """Rows were committed in this process since the last claim began (:meth:`wake`)."""

    def wake(self) -> None:
        """Rows were just committed in this process (a submission): claim them now, without
        waiting for the store's signal. Only a shortcut: a missed call delays nothing
        beyond what the signal and ``poll_s`` already bound."""
        self._woken.set()

    async def run_once(self) -> int:
        """Publish one batch of due rows; returns how many were published."""
        self._woken.clear()  # the claim sees every row committed before it
        entries = await self._outbox.claim_outbox(self._batch, self._lease_s)
        if entries:
            await self._publisher.publish(entries)
            await self._outbox.mark_published([e.id for e in entries])
            self.published += len(entries)
            self.batches += 1
            self._uncompacted_rows += len(entries)
        if len(entries) < self._batch:
            self._maybe_compact()
        return len(entries)

    def _maybe_compact(self) -> None:
        """Start a compaction when the relay has caught up (a short batch) and deleted
        ``compact_after_rows`` rows since the last one began, unless one still runs.
        Caught up, the outbox is mostly rows it deleted, so the compaction is cheap for
        what it reclaims; while it runs, publication goes on."""
        if (self._compaction is None or self._uncompacted_rows < self._compact_after_rows
                or (self._compacting is not None and not self._compacting.done())):
            return
        self._uncompacted_rows = 0
        self._compacting = asyncio.create_task(self._compact(self._compaction))

    async def _compact(self, store: OutboxCompaction) -> None:
        try:
            await store.compact_outbox()
            self.compactions += 1
        except Exception as exc:  # the next one will do; publication goes on
            log.warning("relay: compacting the outbox failed: %s", exc)

    def close(self) -> None:
        """Flush and drop the publisher (after :meth:`run` returned)."""
        self._publisher.close()
        for close in self._closers:
            close()

    async def _idle_s(self) -> float:
        """How long to wait after a short batch: until the earliest row falls due, at
        most ``poll_s``."""
        due_s = await self._outbox.next_outbox_due_s()
        return self._poll_s if due_s is None else min(self._poll_s, max(due_s, 0.001))

    async def _wait(self, stopping: asyncio.Event, timeout_s: float) -> None:
        """Until ``stopping``, a :meth:`wake`, a wake-up from the store's signal, or
        ``timeout_s``."""
        wakeups: list[Awaitable[object]] = [stopping.wait(), self._woken.wait()]
        if self._signal is not None:
            wakeups.append(self._signal.wait_outbox(timeout_s))
        await first_of(wakeups, timeout_s)

    async def run(self, stopping: asyncio.Event) -> None:
        """Until ``stopping`` is set: publish, and when nothing is left, wait for new rows
        (see the module's guarantees)."""
        upkeep = (asyncio.create_task(self._upkeep(self._maintenance, stopping))
                  if self._maintenance is not None else None)
        backoff_s = 0.2
        try:
            while not stopping.is_set():
                try:
                    n = await self.run_once()
                    # Woken during the batch: claim again at once, no wait to work out.
                    idle = n < self._batch and not self._woken.is_set()
                    idle_s = await self._idle_s() if idle else 0.0
                    backoff_s = 0.2
                except (StoreUnavailable, TransportError) as exc:
                    log.warning("relay: %s; retrying in %.1f s", exc, backoff_s)
                    await wait_event(stopping, backoff_s)
                    backoff_s = min(backoff_s * 2, 5.0)
                    continue
                if idle_s > 0:
                    await self._wait(stopping, idle_s)
        finally:
            if upkeep is not None:
                upkeep.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await upkeep
            if self._compacting is not None:  # let a compaction under way end
                await self._compacting

    async def _upkeep(self, maintenance: Periodic, stopping: asyncio.Event) -> None:
        """``maintenance`` every ``maintenance_interval_s`` until ``stopping``; a failed
        pass is logged and the next one comes on time."""
        while not await wait_event(stopping, self._maintenance_interval_s):
            try:
                await maintenance.run_once()
            except (StoreUnavailable, TransportError) as exc:
                log.warning("relay: upkeep failed: %s; next in %.1f s", exc,
                            self._maintenance_interval_s)
            except Exception:  # a bug in one pass must not end upkeep, nor publication
                log.exception("relay: upkeep failed; next in %.1f s",
                              self._maintenance_interval_s)
