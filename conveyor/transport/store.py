"""Store-backed transport: workers claim ready rows directly from the store.

Waiting is a poll with an event that local submissions and finished keys set, so an idle
worker in the same process reacts at once and one in another process within ``poll_s``.

A store may also offer a wake-up of its own (:class:`ReadySignal`, e.g. PostgreSQL's
``LISTEN/NOTIFY``): the transport then waits on it as well, so a worker in another process
reacts within milliseconds; ``poll_s`` remains the fallback (delayed work falling due, a
lost notification).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from ..model import Claim
from ..store.base import Store
from ..waiting import first_of, wait_event


@runtime_checkable
class ReadySignal(Protocol):
    """Optional store capability: wait until work may be ready in ``queues``."""

    async def wait_ready(self, queues: Sequence[str], timeout_s: float) -> None:
        """Return when work may have become ready in one of ``queues`` or after
        ``timeout_s``, whichever is first. Must not raise when the store is unreachable
        (waiting then simply lasts ``timeout_s``)."""


class StoreTransport:
    """Claims are the delivery; ``ack`` has nothing left to do."""

    def __init__(self, store: Store, poll_s: float = 0.2) -> None:
        self._store = store
        self._poll_s = poll_s
        self._queues: tuple[str, ...] = ()
        self._worker_id = ""
        self._wakeup = asyncio.Event()
        self._signal = store if isinstance(store, ReadySignal) else None
        self._drained = False

    async def start(self, queues: Sequence[str], worker_id: str) -> None:
        self._queues = tuple(queues)
        self._worker_id = worker_id

    async def receive(self, max_n: int, lease_s: float, wait_s: float) -> list[Claim]:
        """Claims, waiting up to ``wait_s`` for some. After a claim that got fewer than it
        asked for (everything ready was taken), the next call waits for news first (a
        wake-up, a notification, or ``poll_s``) instead of claiming at once: that claim
        would find nothing, and at low rates it was one of every two claims."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        if self._drained:
            await self._wait(min(self._poll_s, wait_s))
        while True:
            self._wakeup.clear()
            claims = await self._store.claim(self._queues, self._worker_id, max_n, lease_s)
            self._drained = len(claims) < max_n
            remaining = deadline - loop.time()
            if claims or remaining <= 0:
                return claims
            await self._wait(min(self._poll_s, remaining))

    async def _wait(self, timeout_s: float) -> None:
        if self._signal is None:
            await wait_event(self._wakeup, timeout_s)
            return
        await first_of([self._wakeup.wait(),
                        self._signal.wait_ready(self._queues, timeout_s)], timeout_s)

    async def ack(self, claims: Sequence[Claim]) -> None:
        return None

    async def wake(self) -> None:
        self._wakeup.set()

    async def close(self) -> None:
        self._wakeup.set()
