"""Connections of the PostgreSQL store: the pool, transactions, error translation."""

from __future__ import annotations

import asyncio
import contextlib
import select
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import psycopg
from psycopg import pq
from psycopg.rows import DictRow, dict_row
from psycopg.types.string import TextLoader
from psycopg_pool import AsyncConnectionPool

from ..sqlfile import load_blocks, migrations
from .errors import retrying, translated

T = TypeVar("T")
Conn = psycopg.AsyncConnection[DictRow]
SQL = load_blocks(__package__ + ".sql", "queries.sql")
MIGRATIONS = migrations(__package__ + ".sql")
SCHEMA_VERSION = MIGRATIONS[-1][0]


class PgCore:
    """A pool of autocommit connections; ``_tx`` runs a function in one transaction,
    ``_one``/``_all`` run single statements. Every entry point translates connection
    errors into ``StoreUnavailable`` and retries deadlocks."""

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 10,
                 connect_timeout_s: float = 5.0, acquire_timeout_s: float = 5.0,
                 pipeline: bool = False) -> None:
        self.url = url
        self._pipeline = pipeline
        self._connect_timeout_s = connect_timeout_s
        self._pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
            url,
            open=False,
            min_size=min_size,
            max_size=max_size,
            timeout=acquire_timeout_s,
            kwargs={"autocommit": True, "row_factory": dict_row,
                    "connect_timeout": max(1, int(connect_timeout_s))},
            configure=configure,
            check=self._check_idle,
            reconnect_timeout=max(60.0, 4 * connect_timeout_s),
            name="conveyor",
        )
        self._sweep: asyncio.Future[None] | None = None

    async def _check_idle(self, conn: Conn) -> None:
        """The pool's check of a connection it is about to lend; raises for a dead one,
        which the pool then replaces. An idle connection has nothing to read: a server
        that closed it (a restart, a terminated backend, an idle timeout) left a message
        or an end of file on its socket. Only then is it checked with a round trip, which
        fails for a dead one. A healthy connection is lent without one, so each statement
        costs one round trip, not two.

        A dead connection also starts a check of every idle one (``pool.check``): the
        server that closed it most likely closed the others too, and the pool would
        otherwise find them one loan at a time, retrying at once, then after 1 s, 2 s...
        A connection that dies unseen (the host gone, no message sent) fails its next
        statement with ``StoreUnavailable``, as it would between any check and its use."""
        if not conn.closed and not _has_input(conn.pgconn.socket):
            return
        try:
            await AsyncConnectionPool.check_connection(conn)
        except Exception:
            if self._sweep is None or self._sweep.done():
                self._sweep = asyncio.ensure_future(self._check_all())
            raise

    async def _check_all(self) -> None:
        with contextlib.suppress(Exception):  # a pool closed meanwhile: nothing to check
            await self._pool.check()

    async def _stop_checks(self) -> None:
        """Before the pool closes: stop a check of every idle connection under way."""
        if self._sweep is not None and not self._sweep.done():
            self._sweep.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweep

    @property
    def pipeline(self) -> bool:
        """Whether transactions are pipelined (``Config.postgres_pipeline``)."""
        return self._pipeline

    async def _tx(self, fn: Callable[[Conn], Awaitable[T]], *, script: bool = False) -> T:
        """``fn(conn)`` in one transaction. Pipelined when the store was built with
        ``pipeline``: statements whose results ``fn`` does not read are sent without
        waiting for the server (``BEGIN`` with the first statement, the last ones with
        ``COMMIT``), so a transaction costs as many round trips as it has results to read,
        plus one, and an error surfaces when a later result is read or at the end of the
        block, still inside the transaction. ``script`` for scripts of several statements
        (migrations), never pipelined."""
        async def attempt() -> T:
            async with self._pool.connection() as conn:
                if script or not self._pipeline:
                    async with conn.transaction():
                        return await fn(conn)
                async with conn.pipeline(), conn.transaction():
                    return await fn(conn)

        with translated(self.url):
            return await retrying(attempt)

    async def _read(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        """``fn(conn)`` without a transaction: each statement sees its own snapshot (as it
        would inside a READ COMMITTED transaction), one round trip less each way."""
        async def attempt() -> T:
            async with self._pool.connection() as conn:
                return await fn(conn)

        with translated(self.url):
            return await retrying(attempt)

    async def _all(self, name: str, params: dict[str, Any] | None = None, *,
                   prepare: bool | None = None) -> list[DictRow]:
        async def attempt() -> list[DictRow]:
            async with self._pool.connection() as conn:
                return await fetch(conn, name, params, prepare=prepare)

        with translated(self.url):
            return await retrying(attempt)

    async def _one(self, name: str, params: dict[str, Any] | None = None) -> DictRow | None:
        found = await self._all(name, params)
        return found[0] if found else None


async def configure(conn: Conn) -> None:
    """jsonb arrives as text: :mod:`conveyor.store.rows` decodes it (a JSON string value
    must stay distinguishable from JSON text)."""
    conn.adapters.register_loader("jsonb", TextLoader)
    conn.adapters.register_loader("json", TextLoader)


def _poll_input(fd: int) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


def _select_input(fd: int) -> bool:
    return bool(select.select([fd], [], [], 0)[0])


_has_input = _poll_input if hasattr(select, "poll") else _select_input
"""Whether a descriptor has something to read now: ``poll`` (any descriptor number),
or ``select`` where there is no ``poll``; chosen once, not on every loan."""


async def fetch(conn: Conn, name: str, params: dict[str, Any] | None = None, *,
                prepare: bool | None = None) -> list[DictRow]:
    """All rows of the named statement on ``conn`` (empty for statements without rows).

    ``prepare=False`` for the listings with optional filters: planned with their values
    each time, they can use the partial indexes that match the filters given (a prepared,
    generic plan cannot)."""
    async with conn.cursor(row_factory=dict_row) as cur:  # also on callers' connections
        await cur.execute(SQL[name], params, prepare=prepare)
        return await rows_of(cur)


async def rows_of(cur: psycopg.AsyncCursor[DictRow]) -> list[DictRow]:
    """The rows of the cursor's statement, none for a statement without rows. Reading
    them waits for the result, in pipeline mode too (where ``description`` is not known
    before)."""
    try:
        return await cur.fetchall()
    except psycopg.ProgrammingError:
        if cur.pgresult is not None and cur.pgresult.status == pq.ExecStatus.COMMAND_OK:
            return []
        raise


async def refresh_jobs(conn: Conn, job_ids: Sequence[str] | set[str]) -> None:
    """Derive the status of ``job_ids`` again: lock them (in id order, so concurrent
    refreshes never deadlock), then compute from a snapshot taken after the lock."""
    if job_ids:
        ids = sorted(job_ids)
        await conn.execute(SQL["lock_jobs"], {"ids": ids})
        await conn.execute(SQL["refresh_job_status"], {"ids": ids})


async def notify(conn: Conn, queues: set[str] | Sequence[str]) -> None:
    """Tell listening workers (at commit) that work may be ready in ``queues``."""
    if queues:
        await conn.execute(SQL["notify_ready"], {"queues": sorted(set(queues))})


__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "SQL",
    "Conn",
    "PgCore",
    "fetch",
    "notify",
    "psycopg",
    "refresh_jobs",
]
