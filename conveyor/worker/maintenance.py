"""Background upkeep that any worker may run: rescuing operations of dead workers.

Several workers run the rescuer at once; the store makes each rescue a single guarded
update, so an expired lease is re-queued exactly once, and each silent worker is marked
gone once.
"""

from __future__ import annotations

import asyncio
import logging

from ..errors import StoreUnavailable
from ..store.base import Store
from ..transport.base import Transport
from ..waiting import wait_event

log = logging.getLogger("conveyor.maintenance")


class Rescuer:
    """Every ``interval_s``, re-queue operations whose lease expired (their worker died or
    stalled); a killed worker's operation runs again after ``lease_s + interval_s``."""

    def __init__(self, store: Store, transport: Transport, interval_s: float,
                 batch: int = 1000, worker_timeout_s: float = 15.0,
                 gone_worker_retention_s: float = 86_400.0) -> None:
        self._store = store
        self._transport = transport
        self._interval_s = interval_s
        self._batch = batch
        self._worker_timeout_s = worker_timeout_s
        self._gone_worker_retention_s = gone_worker_retention_s

    async def run_once(self) -> list[str]:
        """Mark silent workers gone (freeing their leases), forget long-gone ones, then
        re-queue expired leases."""
        gone = await self._store.expire_workers(self._worker_timeout_s,
                                                self._gone_worker_retention_s)
        if gone:
            log.warning("workers gone (no heartbeat for %.0f s): %s", self._worker_timeout_s,
                        ", ".join(gone))
        rescued = await self._store.rescue_expired(self._batch)
        if rescued:
            log.info("rescued %d operations whose lease expired", len(rescued))
            await self._transport.wake()
        return rescued

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                await self.run_once()
            except StoreUnavailable as exc:
                log.warning("rescuer: store unavailable (%s)", exc)
            await wait_event(stopping, self._interval_s)
