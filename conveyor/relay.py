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
  without the signal is simply polled every ``poll_s``.

The relay also reconciles (see :class:`conveyor.reconcile.Reconciler`) when given one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from .errors import StoreUnavailable, TransportError
from .store.base import OutboxSignal, OutboxStore
from .transport.base import Publisher
from .waiting import first_of

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
        self.published = 0
        self.batches = 0

    async def run_once(self) -> int:
        """Publish one batch of due rows; returns how many were published."""
        entries = await self._outbox.claim_outbox(self._batch, self._lease_s)
        if not entries:
            return 0
        await self._publisher.publish(entries)
        await self._outbox.mark_published([e.id for e in entries])
        self.published += len(entries)
        self.batches += 1
        return len(entries)

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
        """Until ``stopping``, a wake-up from the store's signal, or ``timeout_s``."""
        wakeups: list[Awaitable[object]] = [stopping.wait()]
        if self._signal is not None:
            wakeups.append(self._signal.wait_outbox(timeout_s))
        await first_of(wakeups, timeout_s)

    async def run(self, stopping: asyncio.Event) -> None:
        """Until ``stopping`` is set: publish, and when nothing is left, wait for new rows
        (see the module's guarantees)."""
        loop = asyncio.get_running_loop()
        backoff_s = 0.2
        next_maintenance = loop.time() + self._maintenance_interval_s
        while not stopping.is_set():
            try:
                n = await self.run_once()
                if self._maintenance is not None and loop.time() >= next_maintenance:
                    next_maintenance = loop.time() + self._maintenance_interval_s
                    await self._maintenance.run_once()
                idle_s = await self._idle_s() if n < self._batch else 0.0
                backoff_s = 0.2
            except (StoreUnavailable, TransportError) as exc:
                log.warning("relay: %s; retrying in %.1f s", exc, backoff_s)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), backoff_s)
                backoff_s = min(backoff_s * 2, 5.0)
                continue
            if idle_s > 0:
                await self._wait(stopping, idle_s)
