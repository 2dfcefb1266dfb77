"""``LISTEN``: wake idle workers and relays within milliseconds of new work.

Two channels share one listening connection per process:

* ``conveyor_ready``: transactions that make work ready (submissions, finished keyed
  operations, retries, rescues, releases, replays) send ``pg_notify('conveyor_ready',
  queue)``; workers of the store tier wait on it, per queue.
* ``conveyor_outbox``: every statement that writes outbox rows (Kafka tier) sends one
  (a trigger, ``004_outbox_notify.sql``); the relay waits on it.

PostgreSQL delivers a notification at commit; the listener sets a flag per queue (and
one for the outbox). Notifications are a latency optimisation only: a missed one (the
connection dropped, the server restarted) costs one poll interval, never a job. After a
reconnect every flag is set, since notifications sent meanwhile are lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

import psycopg

from ...waiting import first_of
from .errors import RETRYABLE, UNAVAILABLE

log = logging.getLogger("conveyor.store.postgres")
CHANNEL = "conveyor_ready"
OUTBOX_CHANNEL = "conveyor_outbox"


class Listener:
    def __init__(self, url: str, connect_timeout_s: float) -> None:
        self._url = url
        self._connect_timeout_s = connect_timeout_s
        self._flags: dict[tuple[str, str], asyncio.Event] = {}
        self._task: asyncio.Task[None] | None = None
        self.connected = False
        self.backend_pid: int | None = None
        """The listening connection's server process while connected (for operators
        and tests)."""

    def _flag(self, channel: str, payload: str) -> asyncio.Event:
        flag = self._flags.get((channel, payload))
        if flag is None:
            flag = self._flags[(channel, payload)] = asyncio.Event()
            flag.set()  # new listener: the caller claims once before trusting the flag
        return flag

    async def wait(self, queues: Sequence[str], timeout_s: float) -> None:
        """Return when a notification for one of ``queues`` arrived since the last call
        (at once if one is pending), or after ``timeout_s``."""
        await self._wait([self._flag(CHANNEL, q) for q in queues], timeout_s)

    async def wait_outbox(self, timeout_s: float) -> None:
        """Return when outbox rows were written since the last call (at once if that is
        pending), or after ``timeout_s``."""
        await self._wait([self._flag(OUTBOX_CHANNEL, "")], timeout_s)

    async def _wait(self, flags: list[asyncio.Event], timeout_s: float) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())
        if not any(f.is_set() for f in flags):
            await first_of([f.wait() for f in flags], timeout_s)
        for f in flags:
            f.clear()

    def _set_all(self) -> None:
        for flag in self._flags.values():
            flag.set()

    def _notified(self, channel: str, payload: str) -> None:
        flag = self._flags.get((channel, payload if channel == CHANNEL else ""))
        if flag is not None:
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
                    await conn.execute(f"LISTEN {OUTBOX_CHANNEL}")
                    self.connected = True
                    self.backend_pid = conn.info.backend_pid
                    delay_s = 0.1
                    self._set_all()
                    async for note in conn.notifies():
                        self._notified(note.channel, note.payload)
            except asyncio.CancelledError:
                raise
            except (*UNAVAILABLE, *RETRYABLE) as exc:
                if self.connected:
                    log.warning("LISTEN connection lost (%s); reconnecting", exc)
            finally:
                self.connected = False
                self.backend_pid = None
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, 2.0)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
