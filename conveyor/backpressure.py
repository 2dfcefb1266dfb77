"""Backpressure: refuse new submissions early while a queue is too deep.

Each queue has two thresholds on its depth (``warn``, ``critical``; ``"*"`` is the default
for queues not named). Above ``warn``, low-priority jobs are refused (429); above
``critical``, every job is (503); both with ``Retry-After``. Nothing already accepted is
touched and workers keep claiming as usual, so the backlog drains and submissions are
accepted again once the depth falls back (within ``refresh_s``).

Depth comes from :data:`DepthSource` functions, read in order at most every
``refresh_s`` and combined by taking the largest value per queue: the store's ready count
first (:func:`store_ready_depth`, every queue with waiting operations); a transport with
its own backlog (e.g. consumer lag on a log) adds its own source. Every source is given
what the earlier ones of the same refresh found, so a later one learns the queues without
asking the store again: one refresh reads the store's ready depths once. A source that fails is
ignored for that refresh: a depth that cannot be read never refuses work (the store's own
errors surface on insert anyway).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence

from .errors import Overloaded
from .model import NewJob
from .store.base import Store

log = logging.getLogger("conveyor.backpressure")
DepthSource = Callable[[Mapping[str, int]], Awaitable[Mapping[str, int]]]
"""``async (found) -> {queue: depth}``: how many operations wait to be worked on in each
queue. ``found`` holds the depths the earlier sources of this refresh found (the store's
ready counts for every queue it knows, when the store's source came first); a source that
needs nothing from them ignores it."""


def store_ready_depth(store: Store, cap: int) -> DepthSource:
    """Ready (``queued``) operations per queue, all tenants together: workers are shared,
    so a queue is deep for everyone. Counted up to ``cap`` (past the highest threshold a
    larger count changes nothing), so a refresh costs the store little however deep the
    backlog. Every queue with waiting operations is in the result (0 when none is
    ready), so later sources may take their queue list from it."""

    async def depth(_found: Mapping[str, int]) -> Mapping[str, int]:
        return await store.ready_depths(cap)

    return depth


class Backpressure:
    """Admission control for submissions; :meth:`admit` raises :class:`Overloaded`."""

    def __init__(self, thresholds: Mapping[str, tuple[int, int]], sources: Sequence[DepthSource],
                 *, low_priority: int = 0, refresh_s: float = 1.0,
                 on_reject: Callable[[str, str], None] | None = None) -> None:
        self._thresholds = dict(thresholds)
        self._sources = list(sources)
        self._low_priority = low_priority
        self._refresh_s = refresh_s
        self._on_reject = on_reject
        self._depths: dict[str, int] = {}
        self._read_at = -math.inf
        self._lock = asyncio.Lock()
        self.retry_after_s = max(1, math.ceil(2 * refresh_s))

    def levels(self, queue: str) -> tuple[int, int]:
        return self._thresholds.get(queue, self._thresholds.get("*", (0, 0)))

    async def depths(self) -> Mapping[str, int]:
        """Current depths, re-read when older than ``refresh_s`` (one reader at a time)."""
        if time.monotonic() - self._read_at < self._refresh_s:
            return self._depths
        async with self._lock:
            if time.monotonic() - self._read_at >= self._refresh_s:
                merged: dict[str, int] = {}
                for source in self._sources:
                    try:
                        found = await source(merged)
                    except Exception as exc:  # unknown depth never refuses work
                        log.warning("backpressure: a depth source failed: %s", exc)
                        continue
                    for queue, depth in found.items():
                        merged[queue] = max(depth, merged.get(queue, 0))
                self._depths = merged
                self._read_at = time.monotonic()
        return self._depths

    def is_low_priority(self, job: NewJob) -> bool:
        return all(op.priority < self._low_priority for op in job.operations)

    async def admit(self, jobs: Sequence[NewJob]) -> None:
        """Raise :class:`Overloaded` if any of ``jobs`` must be refused now."""
        depths = await self.depths()
        for queue in dict.fromkeys(job.queue for job in jobs):  # each queue once, in order
            warn, critical = self.levels(queue)
            depth = depths.get(queue, 0)
            if critical and depth >= critical:
                self._reject(queue, "critical")
                raise Overloaded(
                    f"queue {queue!r} is overloaded ({depth} operations waiting, critical "
                    f"level {critical}); retry later", status=503,
                    retry_after_s=self.retry_after_s)
            if warn and depth >= warn and any(
                    self.is_low_priority(job) for job in jobs if job.queue == queue):
                self._reject(queue, "warn")
                raise Overloaded(
                    f"queue {queue!r} is busy ({depth} operations waiting, warning level "
                    f"{warn}): low-priority submissions are refused; retry later",
                    status=429, retry_after_s=self.retry_after_s)

    def _reject(self, queue: str, level: str) -> None:
        if self._on_reject is not None:
            self._on_reject(queue, level)
