"""Token buckets in this process's memory: exact for one API process, no I/O.

Memory is bounded: at most ``max_keys`` buckets are kept; the least recently used one is
dropped beyond that (a dropped bucket comes back full, which errs towards letting a rare
client through, never towards refusing an active one).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from .base import Decision


class MemoryLimiter:
    def __init__(self, rate_per_s: float, burst: int, *, max_keys: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str) -> Decision:
        """Synchronous :meth:`acquire` (no I/O, so no await needed)."""
        now = self._clock()
        tokens, last = self._buckets.pop(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + max(0.0, now - last) * self.rate_per_s)
        if tokens >= 1.0:
            tokens -= 1.0
            decision = Decision(True, self.burst, int(tokens))
        else:
            decision = Decision(False, self.burst, 0, (1.0 - tokens) / self.rate_per_s)
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)
        return decision

    async def acquire(self, key: str) -> Decision:
        return self.take(key)

    async def close(self) -> None:
        self._buckets.clear()
