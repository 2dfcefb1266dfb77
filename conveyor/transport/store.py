"""Store-backed transport: workers claim ready rows directly from the store.

Waiting is a poll with an event that local submissions and finished keys set, so an idle
worker in the same process reacts at once and one in another process within ``poll_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from ..model import Claim
from ..store.base import Store


class StoreTransport:
    """Claims are the delivery; ``ack`` has nothing left to do."""

    def __init__(self, store: Store, poll_s: float = 0.2) -> None:
        self._store = store
        self._poll_s = poll_s
        self._queues: tuple[str, ...] = ()
        self._worker_id = ""
        self._wakeup = asyncio.Event()

    async def start(self, queues: Sequence[str], worker_id: str) -> None:
        self._queues = tuple(queues)
        self._worker_id = worker_id

    async def receive(self, max_n: int, lease_s: float, wait_s: float) -> list[Claim]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while True:
            self._wakeup.clear()
            claims = await self._store.claim(self._queues, self._worker_id, max_n, lease_s)
            remaining = deadline - loop.time()
            if claims or remaining <= 0:
                return claims
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), min(self._poll_s, remaining))

    async def ack(self, claims: Sequence[Claim]) -> None:
        return None

    async def wake(self) -> None:
        self._wakeup.set()

    async def close(self) -> None:
        self._wakeup.set()
