"""Reconciliation for log transports: find operations that are ready in the store but
whose message never reached a worker, and dispatch them again; publish lag metrics.

An operation is re-dispatched when it has been ready (and due) for ``older_than_s`` with
no outbox row, in a queue whose consumer group has **no lag**: every message in the log
was consumed and committed, so nothing carrying it is still on its way. This is what
happens when a topic is deleted and recreated, or an outbox row vanished without being
published. A duplicate this may create is harmless (the store skips stale deliveries).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol

from .errors import TransportError
from .store.base import OutboxStore, Store

log = logging.getLogger("conveyor.reconcile")


class LagProbe(Protocol):
    async def measure(self, queues: Sequence[str]) -> Sequence[Any]:
        """Per-partition lag records with ``queue``, ``partition`` and ``lag``."""

    def close(self) -> None: ...


class TransportStats:
    """Lag per queue and partition and the outbox backlog, for ``/v1/stats`` and
    ``/metrics``."""

    def __init__(self, store: Store, outbox: OutboxStore, lag: LagProbe) -> None:
        self._store = store
        self._outbox = outbox
        self._lag = lag

    async def read(self, queues: Sequence[str] | None = None) -> dict[str, Any]:
        """``{"kind": "kafka", "queues": {q: {"lag", "partitions": [...]}},
        "outbox_backlog": {q: n}}``; ``lag_error`` instead of lags if Kafka is down."""
        pending = await self._outbox.outbox_backlog()
        if queues is None:
            queues = await self._queue_names(pending)
        backlog = {**{q: 0 for q in queues}, **pending}
        out: dict[str, Any] = {"kind": "kafka", "outbox_backlog": backlog, "queues": {}}
        try:
            lags = await self._lag.measure(list(queues))
        except TransportError as exc:
            out["lag_error"] = str(exc)
            return out
        for q in queues:
            parts = [p for p in lags if p.queue == q]
            if parts:
                out["queues"][q] = {"lag": sum(p.lag for p in parts),
                                    "partitions": [p.to_json() for p in parts]}
        return out

    async def _queue_names(self, pending: dict[str, int]) -> list[str]:
        """The queues worth a look without a list from the caller: those with operations
        waiting (the only ones a reconciliation can find, and any whose messages still
        wait in the log), those a live worker consumes (their lag), and those with outbox
        rows. Found through the ready index and two small tables. :meth:`Store.stats`
        read every operation finished in the last five minutes for the names (130 ms of
        PostgreSQL after 120k of them, every pass of the relay's maintenance). Gone
        workers are not asked for: their rows stay for ``gone_worker_retention_s`` (a day)."""
        waiting = await self._store.ready_depths(1)
        workers = await self._store.list_workers()
        return sorted({*waiting, *pending, *(q for w in workers for q in w.queues)})


class Reconciler:
    """One pass of :meth:`run_once` re-dispatches lost operations of lag-free queues and
    refreshes the lag gauges of ``metrics`` (when given)."""

    def __init__(self, store: Store, outbox: OutboxStore, lag: LagProbe, *,
                 older_than_s: float, limit: int = 1000, metrics: Any = None) -> None:
        self._stats = TransportStats(store, outbox, lag)
        self._outbox = outbox
        self._older_than_s = older_than_s
        self._limit = limit
        self._metrics = metrics

    async def run_once(self) -> list[str]:
        stats = await self._stats.read()
        if self._metrics is not None:
            self._metrics.observe_transport(stats)
        redispatched: list[str] = []
        if self._older_than_s <= 0 or "lag_error" in stats:
            return redispatched
        for queue, info in stats["queues"].items():
            if info["lag"] == 0:
                found = await self._outbox.reconcile_outbox(queue, self._older_than_s,
                                                            self._limit)
                if found:
                    log.warning("reconcile: %d operations of queue %s were ready for "
                                "over %.0f s but never reached a worker: dispatched again",
                                len(found), queue, self._older_than_s)
                redispatched.extend(found)
        return redispatched
