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

Calls that ask for their jobs back get the created ones as the group's inserts returned
them (:data:`Insert`).

A group without idempotency keys is first tried as one statement that is its own
transaction (``insert_new``: one round trip instead of five); a clashing id fails that
statement whole, and the group then runs as above.

Up to ``max_groups`` groups are in flight at once (on separate pooled connections): one
by default, so calls that arrive during a commit all wait for the next group, the largest
it can be (``Config.postgres_commit_groups``).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from ...model import NewJob, Submitted
from .core import Conn
from .errors import retrying

Insert = Callable[[Conn, Sequence[NewJob], bool], Awaitable[list[Submitted]]]
"""Insert jobs on a connection inside its transaction; with ``True``, each created job
comes back as stored (``Submitted.job``)."""
Call = tuple[Sequence[NewJob], bool, asyncio.Future[list[Submitted]]]
"""The jobs of one call, whether it wants them back, and its answer."""


class GroupCommit:
    def __init__(self, pool: AsyncConnectionPool[Conn], insert: Insert,
                 max_groups: int = 1, max_jobs: int = 10_000, pipeline: bool = False,
                 insert_new: Insert | None = None) -> None:
        self._pool = pool
        self._pipeline = pipeline
        self._insert = insert
        self._insert_new = insert_new
        self._max_groups = max_groups
        self._max_jobs = max_jobs
        self._pending: list[Call] = []
        self._groups = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self, jobs: Sequence[NewJob], return_jobs: bool = False) -> list[Submitted]:
        """Insert ``jobs`` in the next group transaction; returns once committed. With
        ``return_jobs``, created jobs come back as stored (``Submitted.job``)."""
        future: asyncio.Future[list[Submitted]] = asyncio.get_running_loop().create_future()
        self._pending.append((jobs, return_jobs, future))
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
                    for _, _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise
                    continue
                for (_, _, future), (ok, value) in zip(batch, results, strict=True):
                    if not future.done():
                        if ok:
                            future.set_result(value)
                        else:
                            future.set_exception(value)
        finally:
            self._groups -= 1

    async def _commit(self, batch: list[Call]) -> list[tuple[bool, Any]]:
        async with self._pool.connection() as conn:
            if self._insert_new is not None and not any(
                    j.idempotency_key for jobs, _, _ in batch for j in jobs):
                try:
                    merged = await self._insert_new(
                        conn, [j for jobs, _, _ in batch for j in jobs],
                        any(want for _, want, _ in batch))
                except psycopg.errors.UniqueViolation:
                    pass  # nothing was written: the transaction below finds the clash
                else:
                    return _shared_out(batch, merged)
            if not self._pipeline:
                async with conn.transaction():
                    return await self._inserted(conn, batch)
            # A group costs a round trip per result it reads (see PgCore._tx).
            async with conn.pipeline(), conn.transaction():
                return await self._inserted(conn, batch)

    async def _inserted(self, conn: Conn, batch: list[Call]) -> list[tuple[bool, Any]]:
        if len(batch) == 1:  # alone in its group: its error is the group's, no savepoint
            jobs, want, _ = batch[0]
            return [(True, await self._insert(conn, jobs, want))]
        try:
            async with conn.transaction():  # a savepoint
                merged = await self._insert(conn, [j for jobs, _, _ in batch for j in jobs],
                                            any(want for _, want, _ in batch))
        except psycopg.Error:
            if conn.broken:
                raise
        except Exception:  # retried call by call just below
            pass
        else:
            return _shared_out(batch, merged)
        return [await self._one(conn, jobs, want) for jobs, want, _ in batch]

    async def _one(self, conn: Conn, jobs: Sequence[NewJob], want: bool) -> tuple[bool, Any]:
        try:
            async with conn.transaction():  # a savepoint
                return True, await self._insert(conn, jobs, want)
        except psycopg.Error as exc:
            if conn.broken:
                raise
            return False, exc
        except Exception as exc:  # handed to its caller only
            return False, exc

    async def close(self) -> None:
        for task in list(self._tasks):
            await asyncio.gather(task, return_exceptions=True)


def _shared_out(batch: list[Call], merged: list[Submitted]) -> list[tuple[bool, Any]]:
    """Each call's answers from the answers of the group's merged insert."""
    results: list[tuple[bool, Any]] = []
    for jobs, want, _ in batch:
        answers = merged[: len(jobs)]
        merged = merged[len(jobs):]
        if not want:  # the jobs were read for another call of the group
            answers = [dataclasses.replace(a, job=None) for a in answers]
        results.append((True, answers))
    return results
