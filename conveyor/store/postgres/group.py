"""Group commit: concurrent writes share one transaction, each in its own savepoint.

Callers await :meth:`GroupCommit.run`; calls that arrive while a group transaction is in
flight wait for the next one, so under load many small commits (one WAL flush each)
become a few large ones. Every caller learns its answer only after its group committed,
so an answer still means "durable". A call that fails rolls back its own savepoint and
gets its own exception; a failed commit (or a lost connection) fails every call of the
group, none of which was acknowledged.

Up to ``max_groups`` groups are in flight at once (on separate pooled connections).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg
from psycopg.rows import DictRow
from psycopg_pool import AsyncConnectionPool

from .errors import retrying

T = TypeVar("T")
Conn = psycopg.AsyncConnection[DictRow]
Call = tuple[Callable[[Conn], Awaitable[Any]], asyncio.Future[Any]]


class GroupCommit:
    def __init__(self, pool: AsyncConnectionPool[Conn], max_groups: int = 2,
                 max_calls: int = 512) -> None:
        self._pool = pool
        self._max_groups = max_groups
        self._max_calls = max_calls
        self._pending: list[Call] = []
        self._groups = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        """``await fn(conn)`` inside the next group transaction; returns once committed."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append((fn, future))
        if self._groups < self._max_groups:
            self._groups += 1
            task = asyncio.create_task(self._drain())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await future

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch = self._pending[: self._max_calls]
                del self._pending[: self._max_calls]
                try:
                    await retrying(lambda batch=batch: self._commit(batch))  # type: ignore[misc]
                except BaseException as exc:  # the group failed: every caller learns it
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise
        finally:
            self._groups -= 1

    async def _commit(self, batch: list[Call]) -> None:
        results: list[tuple[bool, Any]] = []
        async with self._pool.connection() as conn, conn.transaction():
            for fn, _ in batch:
                try:
                    async with conn.transaction():  # a savepoint
                        results.append((True, await fn(conn)))
                except psycopg.Error as exc:
                    if conn.broken:
                        raise
                    results.append((False, exc))
                except Exception as exc:  # handed to its caller only
                    results.append((False, exc))
        for (_, future), (ok, value) in zip(batch, results, strict=True):
            if future.done():
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

    async def close(self) -> None:
        for task in list(self._tasks):
            await asyncio.gather(task, return_exceptions=True)
