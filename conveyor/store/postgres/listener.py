"""``LISTEN conveyor_ready``: wake idle workers within milliseconds of new ready work.

Transactions that make work ready (submissions, finished keyed operations, retries,
rescues, releases, replays) send ``pg_notify('conveyor_ready', queue)``; PostgreSQL
delivers it at commit. One listening connection per process sets a flag per queue.
Notifications are a latency optimisation only: a missed one (the connection dropped,
the server restarted) costs one poll interval, never a job. After a reconnect every
queue is flagged, since notifications sent meanwhile are lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

import psycopg

from .errors import RETRYABLE, UNAVAILABLE

log = logging.getLogger("conveyor.store.postgres")
CHANNEL = "conveyor_ready"


class Listener:
    def __init__(self, url: str, connect_timeout_s: float) -> None:
        self._url = url
        self._connect_timeout_s = connect_timeout_s
        self._flags: dict[str, asyncio.Event] = {}
        self._task: asyncio.Task[None] | None = None
        self.connected = False

    def _flag(self, queue: str) -> asyncio.Event:
        flag = self._flags.get(queue)
        if flag is None:
            flag = self._flags[queue] = asyncio.Event()
            flag.set()  # new listener: the caller claims once before trusting the flag
        return flag

    async def wait(self, queues: Sequence[str], timeout_s: float) -> None:
        """Return when a notification for one of ``queues`` arrived since the last call
        (at once if one is pending), or after ``timeout_s``."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())
        flags = [self._flag(q) for q in queues]
        if not any(f.is_set() for f in flags):
            waiters = [asyncio.create_task(f.wait()) for f in flags]
            try:
                await asyncio.wait(waiters, timeout=timeout_s,
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waiters:
                    w.cancel()
        for f in flags:
            f.clear()

    def _set_all(self) -> None:
        for flag in self._flags.values():
            flag.set()

    async def _run(self) -> None:
        delay_s = 0.1
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self._url, autocommit=True,
                    connect_timeout=max(1, int(self._connect_timeout_s)))
                async with conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self.connected = True
                    delay_s = 0.1
                    self._set_all()
                    async for note in conn.notifies():
                        flag = self._flags.get(note.payload)
                        if flag is not None:
                            flag.set()
            except asyncio.CancelledError:
                raise
            except (*UNAVAILABLE, *RETRYABLE) as exc:
                if self.connected:
                    log.warning("LISTEN connection lost (%s); reconnecting", exc)
            finally:
                self.connected = False
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, 2.0)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
