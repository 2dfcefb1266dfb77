"""The SQLite store's plumbing: connections, the writer thread and its group commit.

Concurrency inside a process: all writes run on one thread with one connection, reads on
another. Writes that arrive while a transaction is running are merged into the next one
(group commit: submissions, claims, outcomes and heartbeats alike); one failing call does
not undo the others (see ``SQLiteCore._group``), and every caller learns its answer only
after that transaction committed. Under load this turns many fsyncs into one.

Claims go first: when claims wait together with other writes, the claims commit in a
transaction of their own and are answered before the others are written. A worker then
runs the operations it has just claimed while the outcomes of its last ones are being
written, instead of waiting for both.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from ...errors import StoreUnavailable
from ...model import OpStatus
from ..recent import slot_of
from ..sqlfile import load_blocks

T = TypeVar("T")
_Call = tuple[Callable[..., Any], tuple[Any, ...], "asyncio.Future[Any]", bool]
"""A write waiting for the writer thread: the function, its arguments, the caller's
future, and whether it goes first (see ``SQLiteCore._write``)."""
ENDED = frozenset(s.value for s in OpStatus if s.terminal)
SQL = load_blocks(__package__ + ".sql", "queries.sql")

_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
"""One encoder for every call: ``json.dumps`` with options builds a new one each time."""


def dumps(value: Any) -> str:
    if value is None:  # most results and errors
        return "null"
    if not value and type(value) is dict:  # most metadata, headers and args
        return "{}"
    return _encode(value)


MAX_ROWS_PER_STATEMENT = 1024
"""The most rows one multi-row insert takes (fewer when SQLite's limit on a statement's
parameters is lower: 999 before SQLite 3.32, 32,766 since)."""


@functools.cache
def _rows_sql(name: str, rows: int) -> str:
    head, _, row = SQL[name].rstrip(" \n;").rpartition("VALUES")
    return f"{head}VALUES {', '.join([row.strip()] * rows)}"


def insert_rows(conn: sqlite3.Connection, name: str, rows: Sequence[Sequence[Any]]) -> None:
    """Insert ``rows`` (tuples of the positional parameters of the one-row statement
    ``name``) in their order, in statements of a power of two rows each, as large as
    SQLite's parameter limit and :data:`MAX_ROWS_PER_STATEMENT` allow: few statements,
    and at most eleven distinct ones per name for a connection to prepare and cache."""
    if not rows:
        return
    limit = min(MAX_ROWS_PER_STATEMENT,
                conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // len(rows[0]))
    at, total = 0, len(rows)
    while at < total:
        size = 1 << (min(limit, total - at).bit_length() - 1)
        conn.execute(_rows_sql(name, size), [value for row in rows[at:at + size] for value in row])
        at += size


def statements(script: str) -> list[str]:
    """The statements of ``script`` one by one, split where SQLite says a statement ends
    (not at every semicolon: comments, strings and trigger bodies hold them too), to run
    inside the caller's transaction, which ``executescript`` would commit first."""
    out: list[str] = []
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            if pending.strip(" \t\n;"):
                out.append(pending)
            pending = ""
    if pending.strip():
        out.append(pending)
    return out


def _first_then_rest(batch: list[_Call]) -> list[list[_Call]]:
    """The calls that go first, then the others, each part in its own order; one part
    when all or none go first."""
    first = [call for call in batch if call[3]]
    if not first or len(first) == len(batch):
        return [batch]
    return [first, [call for call in batch if not call[3]]]


class SQLiteCore:
    """Connections and transactions of :class:`~conveyor.store.sqlite.SQLiteStore`, and
    the SQL helpers its parts share."""

    claims_first = True
    """Claims overtake the writes queued with them (:class:`~conveyor.store.base.ClaimsFirst`)."""

    def __init__(
        self,
        path: Path | str,
        *,
        synchronous: str = "FULL",
        clock: Callable[[], float] = time.time,
        busy_timeout_ms: int = 30_000,
    ) -> None:
        self.path = Path(path)
        self._synchronous = synchronous.upper()
        self._clock = clock
        self._busy_timeout_ms = busy_timeout_ms
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="conveyor-sqlite-w")
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="conveyor-sqlite-r")
        self._local = threading.local()
        self._pending: list[_Call] = []
        self._pending_lock = threading.Lock()
        self._writing = False  # the writer thread runs _write_groups (under _pending_lock)

    # connections -----------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")
            conn.execute("PRAGMA foreign_keys = ON")
            self._local.conn = conn
        return conn

    async def _run(self, executor: ThreadPoolExecutor, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(executor, fn, *args)
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(f"SQLite at {self.path}: {exc}") from exc

    async def _write(self, fn: Callable[..., T], *args: Any, first: bool = False) -> T:
        """Run ``fn(conn, *args)`` in the next group transaction; return once committed.

        The writer thread takes the calls itself: when a group commits it starts the next
        with every call made meanwhile, without a turn of the event loop (which may be
        busy running the attempts it just claimed), and hands the answers back to it.
        ``first`` calls (claims) are written ahead of the others of their group, in a
        transaction of their own."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        with self._pending_lock:
            self._pending.append((fn, args, future, first))
            idle, self._writing = not self._writing, True
        if idle:
            self._writer.submit(self._write_groups, loop)
        return await future

    def _write_groups(self, loop: asyncio.AbstractEventLoop) -> None:
        """The writer thread: one group transaction after the other until no call waits."""
        while True:
            with self._pending_lock:
                batch, self._pending = self._pending, []
                if not batch:
                    self._writing = False
                    return
            for part in _first_then_rest(batch):
                try:
                    answers: list[tuple[bool, Any]] = self._group(part)
                except BaseException as exc:  # the commit failed: its callers learn it
                    answers = [(False, exc)] * len(part)
                with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits
                    loop.call_soon_threadsafe(self._answer, part, answers)

    def _answer(self, batch: list[_Call], answers: list[tuple[bool, Any]]) -> None:
        for (_, _, future, _), (ok, value) in zip(batch, answers, strict=True):
            if future.done():
                continue
            if ok:
                future.set_result(value)
            elif isinstance(value, sqlite3.OperationalError):
                future.set_exception(StoreUnavailable(f"SQLite at {self.path}: {value}"))
            else:
                future.set_exception(value)

    def _group(self, batch: list[_Call]) -> list[tuple[bool, Any]]:
        """One transaction for the whole batch.

        The calls run one after the other in one transaction and commit together. When one
        of them raises, that transaction is rolled back and the batch runs again with a
        savepoint per call, so only the failing call's writes are undone and only its
        caller gets the error. Calls only write through ``conn`` and return values, so
        running them again after a rollback is safe.

        Why not a savepoint per call from the start: every statement releases the GIL
        while SQLite runs it and takes it back afterwards, and under load each taking back
        waits for the event loop's thread. Without the two statements per call
        (``SAVEPOINT``, ``RELEASE``), embedded B2 was 15-47 % faster in 3 alternating
        pairs."""
        if len(batch) == 1:
            fn, args, _, _ = batch[0]
            try:
                return [(True, self._transaction(fn, *args))]
            except Exception as exc:  # handed to the caller
                return [(False, exc)]
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            try:
                answers: list[tuple[bool, Any]] = [(True, fn(conn, *args))
                                                   for fn, args, _, _ in batch]
            except Exception:  # one call failed: run them again, each in its savepoint
                if conn.in_transaction:  # some errors end the transaction themselves
                    conn.execute("ROLLBACK")
                conn.execute("BEGIN IMMEDIATE")
                answers = self._each_in_savepoint(conn, batch)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return answers

    @staticmethod
    def _each_in_savepoint(conn: sqlite3.Connection, batch: list[_Call]
                           ) -> list[tuple[bool, Any]]:
        answers: list[tuple[bool, Any]] = []
        for fn, args, _, _ in batch:
            conn.execute("SAVEPOINT call")
            try:
                answers.append((True, fn(conn, *args)))
            except Exception as exc:  # handed to its caller only
                conn.execute("ROLLBACK TO call")
                answers.append((False, exc))
            conn.execute("RELEASE call")
        return answers

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._run(self._reader, lambda: fn(self._conn(), *args))

    def _transaction(self, fn: Callable[..., T], *args: Any) -> T:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(conn, *args)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result

    def _count_ended(self, conn: sqlite3.Connection, changed: Sequence[sqlite3.Row],
                     sign: int = 1) -> None:
        """Add the operations of ``changed`` (rows with tenant, queue and status) that are
        ended to the running totals (``sign=-1``: take them off), and to the finishes
        of the current slot (not taken off: finishes as they happened). Every statement
        that ends operations or brings them back calls this in its transaction."""
        ended = Counter((r["tenant"], r["queue"], r["status"]) for r in changed
                        if r["status"] in ENDED)
        if not ended:
            return
        conn.executemany(SQL["add_op_totals"], [
            {"tenant": tenant, "queue": queue, "status": status, "n": sign * n}
            for (tenant, queue, status), n in ended.items()])
        if sign > 0:
            slot = slot_of(self._clock())
            finished: Counter[tuple[str, str]] = Counter()
            failed: Counter[tuple[str, str]] = Counter()
            for (tenant, queue, status), n in ended.items():
                finished[tenant, queue] += n
                failed[tenant, queue] += n if status == "dead" else 0
            conn.executemany(SQL["add_op_recent"], [
                {"tenant": tenant, "queue": queue, "slot": slot, "finished": n,
                 "failed": failed[tenant, queue]}
                for (tenant, queue), n in finished.items()])

    @staticmethod
    def _refresh_jobs(conn: sqlite3.Connection, job_ids: set[str]) -> None:
        if job_ids:
            conn.execute(SQL["refresh_job_status"], {"ids": dumps(sorted(job_ids))})

