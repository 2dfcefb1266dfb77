"""Group commit of submissions: concurrent ``insert_jobs`` calls share one transaction and,
when they can, one multi-row insert.

Callers await :meth:`GroupCommit.run`; calls that arrive while a group transaction is in
flight wait for the next one, so under load many small commits (one WAL flush each) become
a few large ones, and many small inserts become one statement per table. Every caller
learns its answer only after its group committed, so an answer still means "durable".

The merged insert behaves as if the calls ran one after the other in arrival order (an
idempotency key used by two calls resolves to the first one's job). If it fails, the group
falls back to one savepoint per call, so a failing call gets its own exception and does
not undo the others. A failed commit (or a lost connection) fails every call of the group,
none of which was acknowledged.

Up to ``max_groups`` groups are in flight at once (on separate pooled connections).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from ...model import NewJob, Submitted
from .core import Conn
from .errors import retrying

Insert = Callable[[Conn, Sequence[NewJob]], Awaitable[list[Submitted]]]
Call = tuple[Sequence[NewJob], asyncio.Future[list[Submitted]]]


class GroupCommit:
    def __init__(self, pool: AsyncConnectionPool[Conn], insert: Insert, max_groups: int = 2,
                 max_jobs: int = 10_000) -> None:
        self._pool = pool
        self._insert = insert
        self._max_groups = max_groups
        self._max_jobs = max_jobs
        self._pending: list[Call] = []
        self._groups = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self, jobs: Sequence[NewJob]) -> list[Submitted]:
        """Insert ``jobs`` in the next group transaction; returns once committed."""
        future: asyncio.Future[list[Submitted]] = asyncio.get_running_loop().create_future()
        self._pending.append((jobs, future))
        if self._groups < self._max_groups:
            self._groups += 1
            task = asyncio.create_task(self._drain())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await future

    def _take(self) -> list[Call]:
        batch: list[Call] = []
        size = 0
        while self._pending and (not batch or size + len(self._pending[0][0]) <= self._max_jobs):
            call = self._pending.pop(0)
            batch.append(call)
            size += len(call[0])
        return batch

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch = self._take()
                try:
                    results = await retrying(lambda batch=batch: self._commit(batch))  # type: ignore[misc]
                except BaseException as exc:  # the group failed: every caller learns it
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise
                    continue
                for (_, future), (ok, value) in zip(batch, results, strict=True):
                    if not future.done():
                        if ok:
                            future.set_result(value)
                        else:
                            future.set_exception(value)
        finally:
            self._groups -= 1

    async def _commit(self, batch: list[Call]) -> list[tuple[bool, Any]]:
        async with self._pool.connection() as conn, conn.transaction():
            if len(batch) > 1:
                try:
                    async with conn.transaction():  # a savepoint
                        merged = await self._insert(conn, [j for jobs, _ in batch for j in jobs])
                except psycopg.Error:
                    if conn.broken:
                        raise
                except Exception:  # retried call by call just below
                    pass
                else:
                    results: list[tuple[bool, Any]] = []
                    for jobs, _ in batch:
                        results.append((True, merged[: len(jobs)]))
                        merged = merged[len(jobs):]
                    return results
            return [await self._one(conn, jobs) for jobs, _ in batch]

    async def _one(self, conn: Conn, jobs: Sequence[NewJob]) -> tuple[bool, Any]:
        try:
            async with conn.transaction():  # a savepoint
                return True, await self._insert(conn, jobs)
        except psycopg.Error as exc:
            if conn.broken:
                raise
            return False, exc
        except Exception as exc:  # handed to its caller only
            return False, exc

    async def close(self) -> None:
        for task in list(self._tasks):
            await asyncio.gather(task, return_exceptions=True)
