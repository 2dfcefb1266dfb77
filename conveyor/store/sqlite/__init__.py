"""SQLite store: the embedded tier's source of truth (one file, WAL mode).

Durability: every write commits before its method returns; with ``synchronous=FULL``
(the default) the commit is fsynced, so an acknowledged submission survives ``kill -9``
and power loss. Several processes may share one file: writes take SQLite's write lock
(``BEGIN IMMEDIATE``), so claims stay exclusive across processes.

Concurrency inside a process: all writes run on one thread with one connection, reads on
another. Writes that arrive while a transaction is running are merged into the next one
(group commit: submissions, claims, outcomes and heartbeats alike), each in its own
savepoint so one failing call does not undo the others; every caller learns its answer
only after that transaction committed. Under load this turns many fsyncs into one.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from ...errors import SchemaMismatch, StoreUnavailable
from ...keys import ApiKey
from ...model import (
    Claim,
    Job,
    JobFilter,
    Lease,
    LeaseState,
    NewJob,
    Operation,
    OpFilter,
    OpStatus,
    Outcome,
    QueueStats,
    Submitted,
    TaskInfo,
    WorkerInfo,
    new_id,
)
from .. import rows
from ..sqlfile import load_blocks, migrations

T = TypeVar("T")
_ENDED = frozenset(s.value for s in OpStatus if s.terminal)
_SQL = load_blocks(__name__ + ".sql", "queries.sql")
_INSERT_JOB_RETURNING = _SQL["insert_job"].removesuffix(";") + "\nRETURNING *;"
_INSERT_OPERATION_RETURNING = _SQL["insert_operation"].removesuffix(";") + "\nRETURNING *;"
_KEYS_SQL = load_blocks(__name__ + ".sql", "keys.sql")
_MIGRATIONS = migrations(__name__ + ".sql")
SCHEMA_VERSION = _MIGRATIONS[-1][0]


_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
"""One encoder for every call: ``json.dumps`` with options builds a new one each time."""


def _dumps(value: Any) -> str:
    if value is None:  # most results and errors
        return "null"
    if not value and type(value) is dict:  # most metadata, headers and args
        return "{}"
    return _encode(value)


def _statements(script: str) -> list[str]:
    """The statements of ``script`` one by one (a trigger's body holds semicolons too), to
    run inside the caller's transaction, which ``executescript`` would commit first."""
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


class SQLiteStore:
    """The :class:`~conveyor.store.base.Store` port on a SQLite file."""

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
        self._pending: list[tuple[Callable[..., Any], tuple[Any, ...], asyncio.Future[Any]]] = []
        self._flushing = False
        self._flush_task: asyncio.Task[None] | None = None

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

    async def _write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` in the next group transaction; return once committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._pending.append((fn, args, future))
        if not self._flushing:
            self._flushing = True
            self._flush_task = loop.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    answers = await self._run(self._writer, self._group, batch)
                except BaseException as exc:  # the commit failed: every caller learns it
                    for _, _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, _, future), (ok, value) in zip(batch, answers, strict=True):
                    if future.done():
                        continue
                    if ok:
                        future.set_result(value)
                    elif isinstance(value, sqlite3.OperationalError):
                        future.set_exception(StoreUnavailable(f"SQLite at {self.path}: {value}"))
                    else:
                        future.set_exception(value)
        finally:
            self._flushing = False

    def _group(
        self, batch: list[tuple[Callable[..., Any], tuple[Any, ...], asyncio.Future[Any]]]
    ) -> list[tuple[bool, Any]]:
        """One transaction for the whole batch, one savepoint per call."""
        if len(batch) == 1:
            fn, args, _ = batch[0]
            try:
                return [(True, self._transaction(fn, *args))]
            except Exception as exc:  # handed to the caller
                return [(False, exc)]
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        answers: list[tuple[bool, Any]] = []
        try:
            for fn, args, _ in batch:
                conn.execute("SAVEPOINT call")
                try:
                    answers.append((True, fn(conn, *args)))
                except Exception as exc:  # handed to its caller only
                    conn.execute("ROLLBACK TO call")
                    answers.append((False, exc))
                conn.execute("RELEASE call")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
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

    # lifecycle -------------------------------------------------------------------------
    async def open(self) -> None:
        version = await self._read(self._schema_version)
        if version != SCHEMA_VERSION:
            raise SchemaMismatch(
                f"{self.path} has schema version {version}, this Conveyor needs "
                f"{SCHEMA_VERSION}: run `conveyor migrate --store sqlite:///{self.path}`"
            )

    @staticmethod
    def _schema_version(conn: sqlite3.Connection) -> int:
        try:
            row = conn.execute(_SQL["schema_version"]).fetchone()
        except sqlite3.OperationalError:
            return 0
        return int(row[0]) if row else 0

    async def close(self) -> None:
        def close_local() -> None:
            conn = getattr(self._local, "conn", None)
            if conn is not None:
                conn.close()
                self._local.conn = None

        for executor in (self._writer, self._reader):
            await asyncio.get_running_loop().run_in_executor(executor, close_local)
            executor.shutdown(wait=False)

    async def migrate(self) -> int:
        def apply(conn: sqlite3.Connection) -> int:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            current = self._schema_version(conn)
            if current > SCHEMA_VERSION:
                raise SchemaMismatch(
                    f"{self.path} has schema version {current}, newer than this Conveyor "
                    f"({SCHEMA_VERSION}); upgrade Conveyor"
                )
            for version, sql in _MIGRATIONS:
                if version > current:
                    for statement in _statements(sql):
                        conn.execute(statement)
            conn.execute("DELETE FROM schema_version")
            conn.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
            return SCHEMA_VERSION

        return await self._write(apply)

    async def ping(self) -> None:
        await self._read(lambda conn: conn.execute("SELECT 1").fetchone())

    async def now(self) -> float:
        return self._clock()

    # submission ------------------------------------------------------------------------
    async def insert_jobs(
        self, jobs: Sequence[NewJob], *, return_jobs: bool = False
    ) -> list[Submitted]:
        """All of ``jobs`` or none, committed (with whatever else shares the group) before
        the answers are returned."""
        if return_jobs:
            return await self._write(self._insert_returning, jobs)
        return await self._write(self._insert_all, jobs)

    def _insert_returning(
        self, conn: sqlite3.Connection, jobs: Sequence[NewJob]
    ) -> list[Submitted]:
        """:meth:`_insert_all`, with each created job as stored: from the rows its inserts
        return (``RETURNING``), not read again. One statement per row: for the one-job
        submissions that want their jobs, fewer statements than a multi-row insert and
        two reads (about a fifth of the writer thread's time in B2)."""
        now = self._clock()
        answers: list[Submitted] = []
        for job in jobs:
            row = conn.execute(_INSERT_JOB_RETURNING, self._job_row(job, now)).fetchone()
            if row is None:  # not created: its idempotency key (or id) exists
                answers.append(self._existing(conn, job))
                continue
            op_rows = [conn.execute(_INSERT_OPERATION_RETURNING, values).fetchone()
                       for values in self._operation_rows(job, now)]
            answers.append(Submitted(job.id, created=True, job=rows.jobs([row], op_rows)[0]))
        return answers

    def _insert_all(self, conn: sqlite3.Connection, jobs: Sequence[NewJob]) -> list[Submitted]:
        now = self._clock()
        if any(job.idempotency_key is not None for job in jobs):
            return [self._insert_one(conn, job, now) for job in jobs]
        # No idempotency key: a job row is always new, so all of them go in one statement,
        # then all operations in a second one, in input order (seq is submission order).
        cur = conn.executemany(_SQL["insert_job"], [self._job_row(job, now) for job in jobs])
        if cur.rowcount != len(jobs):  # a primary-key clash: ids are random, a bug upstream
            raise sqlite3.IntegrityError("a job id of the batch already exists")
        conn.executemany(_SQL["insert_operation"],
                         [row for job in jobs for row in self._operation_rows(job, now)])
        return [Submitted(job.id, created=True) for job in jobs]

    @staticmethod
    def _job_row(job: NewJob, now: float) -> dict[str, Any]:
        return {
            "id": job.id, "tenant": job.tenant, "queue": job.queue,
            "metadata": _dumps(job.metadata), "headers": _dumps(job.headers),
            "idempotency_key": job.idempotency_key, "request_hash": job.request_hash,
            "now": now,
        }

    @staticmethod
    def _operation_rows(job: NewJob, now: float) -> list[dict[str, Any]]:
        headers = _dumps(job.headers)
        return [
            {
                "id": new_id(), "job_id": job.id, "tenant": job.tenant, "queue": job.queue,
                "task": op.task, "args": _dumps(op.args), "key": op.key,
                "priority": op.priority,
                "status": (OpStatus.SCHEDULED if op.delay_s > 0 else OpStatus.QUEUED).value,
                "max_attempts": op.max_attempts, "timeout_s": op.timeout_s, "now": now,
                "run_at": now + op.delay_s, "headers": headers,
            }
            for op in job.operations
        ]

    def _insert_one(self, conn: sqlite3.Connection, job: NewJob, now: float) -> Submitted:
        cur = conn.execute(_SQL["insert_job"], self._job_row(job, now))
        if cur.rowcount == 0:
            return self._existing(conn, job)
        conn.executemany(_SQL["insert_operation"], self._operation_rows(job, now))
        return Submitted(job.id, created=True)

    @staticmethod
    def _existing(conn: sqlite3.Connection, job: NewJob) -> Submitted:
        """The answer for ``job`` when its insert created nothing: the job that holds its
        idempotency key (a conflict when the bodies differ)."""
        row = conn.execute(
            _SQL["find_idempotent"],
            {"tenant": job.tenant, "idempotency_key": job.idempotency_key},
        ).fetchone()
        if row is None:  # a primary-key clash: ids are random, so this is a bug upstream
            raise sqlite3.IntegrityError(f"job id {job.id} already exists")
        same = row["request_hash"] == job.request_hash
        return Submitted(row["id"], created=False, conflict=not same)

    # reads -----------------------------------------------------------------------------
    @staticmethod
    def _with_operations(conn: sqlite3.Connection, job_rows: list[sqlite3.Row]) -> list[Job]:
        ids = _dumps([row["id"] for row in job_rows])
        op_rows = conn.execute(_SQL["operations_of_jobs"], {"ids": ids}).fetchall()
        return rows.jobs(job_rows, op_rows)

    async def get_jobs(self, ids: Sequence[str], tenant: str | None = None) -> list[Job]:
        def read(conn: sqlite3.Connection) -> list[Job]:
            found = conn.execute(
                _SQL["select_jobs"], {"ids": _dumps(list(ids)), "tenant": tenant}
            ).fetchall()
            return self._with_operations(conn, found)

        return await self._read(read)

    async def list_jobs(self, flt: JobFilter) -> list[Job]:
        def read(conn: sqlite3.Connection) -> list[Job]:
            found = conn.execute(
                _SQL["list_jobs"],
                {
                    "tenant": flt.tenant, "status": flt.status.value if flt.status else None,
                    "queue": flt.queue, "task": flt.task, "after": flt.after,
                    "limit": flt.limit,
                },
            ).fetchall()
            return self._with_operations(conn, found)

        return await self._read(read)

    @staticmethod
    def _op_params(flt: OpFilter) -> dict[str, Any]:
        return {
            "tenant": flt.tenant, "status": flt.status.value if flt.status else None,
            "queue": flt.queue, "task": flt.task, "job_id": flt.job_id,
            "ids": _dumps(list(flt.ids)) if flt.ids is not None else None,
        }

    async def list_operations(self, flt: OpFilter) -> list[Operation]:
        params = {**self._op_params(flt), "after_seq": flt.after_seq or 0, "limit": flt.limit}
        found = await self._read(lambda c: c.execute(_SQL["list_operations"], params).fetchall())
        return [rows.operation(r) for r in found]

    async def ready_depths(self, cap: int) -> dict[str, int]:
        def read(conn: sqlite3.Connection) -> dict[str, int]:
            return {row["queue"]: int(row["depth"])
                    for row in conn.execute(_SQL["ready_depths"], {"cap": cap})}

        return await self._read(read)

    async def stats(self, tenant: str | None = None) -> list[QueueStats]:
        def read(conn: sqlite3.Connection) -> list[QueueStats]:
            now = self._clock()
            params = {"tenant": tenant, "now": now}
            counts: dict[str, dict[str, int]] = {}
            for row in conn.execute(_SQL["stats_counts"], params):
                counts.setdefault(row["queue"], {s.value: 0 for s in OpStatus})[row["status"]] = (
                    row["n"]
                )
            oldest = {r["queue"]: r["oldest"] for r in conn.execute(_SQL["stats_oldest_ready"],
                                                                     params)}
            recent = {r["queue"]: r for r in conn.execute(_SQL["stats_recent"], params)}
            return [
                QueueStats(
                    queue=queue,
                    counts=by_status,
                    oldest_ready_age_s=max(0.0, now - oldest[queue]) if queue in oldest else None,
                    finished_last_1m=int(recent[queue]["last_1m"] or 0) if queue in recent else 0,
                    finished_last_5m=int(recent[queue]["last_5m"] or 0) if queue in recent else 0,
                    failed_last_5m=int(recent[queue]["failed_5m"] or 0) if queue in recent else 0,
                )
                for queue, by_status in sorted(counts.items())
            ]

        return await self._read(read)

    # changes by clients ----------------------------------------------------------------
    async def cancel_jobs(self, ids: Sequence[str], tenant: str | None = None) -> list[str]:
        def cancel(conn: sqlite3.Connection) -> list[str]:
            found = [
                r["id"]
                for r in conn.execute(
                    _SQL["select_jobs"], {"ids": _dumps(list(ids)), "tenant": tenant}
                )
            ]
            params = {"ids": _dumps(found), "now": self._clock()}
            self._count_ended(conn, conn.execute(_SQL["cancel_waiting"], params).fetchall())
            conn.execute(_SQL["cancel_running"], params)
            conn.execute(_SQL["refresh_job_status"], params)
            return found

        return await self._write(cancel)

    async def replay(self, flt: OpFilter) -> list[str]:
        def replay(conn: sqlite3.Connection) -> list[str]:
            found = conn.execute(
                _SQL["replay"], {**self._op_params(flt), "now": self._clock()}
            ).fetchall()
            self._count_ended(conn, found, -1)
            self._refresh_jobs(conn, {r["job_id"] for r in found})
            return [r["id"] for r in found]

        return await self._write(replay)

    @staticmethod
    def _count_ended(conn: sqlite3.Connection, changed: Sequence[sqlite3.Row],
                     sign: int = 1) -> None:
        """Add the operations of ``changed`` (rows with tenant, queue and status) that are
        ended to the running totals (``sign=-1``: take them off). Every statement that
        ends operations or brings them back calls this in its transaction."""
        ended = Counter((r["tenant"], r["queue"], r["status"]) for r in changed
                        if r["status"] in _ENDED)
        if ended:
            conn.executemany(_SQL["add_op_totals"], [
                {"tenant": tenant, "queue": queue, "status": status, "n": sign * n}
                for (tenant, queue, status), n in ended.items()])

    @staticmethod
    def _refresh_jobs(conn: sqlite3.Connection, job_ids: set[str]) -> None:
        if job_ids:
            conn.execute(_SQL["refresh_job_status"], {"ids": _dumps(sorted(job_ids))})

    # worker side -----------------------------------------------------------------------
    async def claim(
        self, queues: Sequence[str], worker_id: str, limit: int, lease_s: float
    ) -> list[Claim]:
        def claim(conn: sqlite3.Connection) -> list[sqlite3.Row]:
            found: list[sqlite3.Row] = []
            for queue in queues:  # one indexed walk per queue, in the worker's queue order
                remaining = limit - len(found)
                if remaining <= 0:
                    break
                params = {"queue": queue, "worker_id": worker_id, "lease_s": lease_s,
                          "limit": remaining}
                found.extend(self._claim(conn, _SQL["claim"], params))
            return found

        # Rows become Claims here, on the caller's thread: the writer thread, which every
        # write of the process waits for, only runs SQL.
        return rows.claims_in_order(await self._write(claim))

    async def claim_ids(self, op_ids: Sequence[str], worker_id: str, lease_s: float) -> list[Claim]:
        params = {"ids": _dumps(list(op_ids)), "worker_id": worker_id, "lease_s": lease_s}
        return rows.claims_in_order(await self._write(self._claim, _SQL["claim_ids"], params))

    def _claim(self, conn: sqlite3.Connection, sql: str, params: dict[str, Any]
               ) -> list[sqlite3.Row]:
        found = conn.execute(sql, {**params, "now": self._clock()}).fetchall()
        if found:
            conn.execute(_SQL["mark_jobs_running"],
                         {"ids": _dumps(sorted({r["job_id"] for r in found}))})
        return found

    async def extend_leases(self, leases: Sequence[Lease], lease_s: float) -> list[LeaseState]:
        def extend(conn: sqlite3.Connection) -> list[LeaseState]:
            now = self._clock()
            states = []
            for lease in leases:
                row = conn.execute(
                    _SQL["extend_lease"],
                    {"op_id": lease.op_id, "lease_token": lease.lease_token, "now": now,
                     "lease_s": lease_s},
                ).fetchone()
                states.append(LeaseState(lease.op_id, row is not None,
                                         bool(row and row["cancel_requested"])))
            return states

        return await self._write(extend)

    async def complete_many(self, outcomes: Sequence[Outcome]) -> list[bool]:
        """One fenced statement for the whole batch (see ``complete_many`` in queries.sql),
        then one job-status refresh for the jobs it touched."""
        batch = _dumps([
            [out.op_id, out.lease_token, out.kind.value, _dumps(out.result),
             _dumps(out.error.to_json()) if out.error else None, out.retry_in_s]
            for out in outcomes
        ])

        def complete(conn: sqlite3.Connection) -> list[bool]:
            found = conn.execute(
                _SQL["complete_many"], {"batch": batch, "now": self._clock()}
            ).fetchall()
            self._count_ended(conn, found)
            self._refresh_jobs(conn, {r[1] for r in found})
            done = {r[0] for r in found}
            accepted: list[bool] = []
            for out in outcomes:  # an op listed twice is recorded once: the first counts
                accepted.append(out.op_id in done)
                done.discard(out.op_id)
            return accepted

        return await self._write(complete)

    async def release(self, leases: Sequence[Lease]) -> int:
        def release(conn: sqlite3.Connection) -> int:
            now = self._clock()
            released = [
                row
                for lease in leases
                if (row := conn.execute(
                    _SQL["release"],
                    {"op_id": lease.op_id, "lease_token": lease.lease_token, "now": now},
                ).fetchone()) is not None
            ]
            self._count_ended(conn, released)
            self._refresh_jobs(conn, {r["job_id"] for r in released})
            return len(released)

        return await self._write(release)

    async def rescue_expired(self, limit: int) -> list[str]:
        def rescue(conn: sqlite3.Connection) -> list[str]:
            found = conn.execute(
                _SQL["rescue_expired"], {"now": self._clock(), "limit": limit}
            ).fetchall()
            self._count_ended(conn, found)
            self._refresh_jobs(conn, {r["job_id"] for r in found})
            return [r["id"] for r in found]

        return await self._write(rescue)

    # registry --------------------------------------------------------------------------
    async def upsert_tasks(self, tasks: Sequence[TaskInfo]) -> None:
        def upsert(conn: sqlite3.Connection) -> None:
            now = self._clock()
            conn.executemany(
                _SQL["upsert_task"],
                [{**t.to_json(), "schema": _dumps(t.schema), "now": now} for t in tasks],
            )

        await self._write(upsert)

    async def list_tasks(self) -> list[TaskInfo]:
        found = await self._read(lambda c: c.execute(_SQL["list_tasks"]).fetchall())
        return [rows.task_info(r) for r in found]

    async def upsert_workers(self, workers: Sequence[WorkerInfo]) -> None:
        def upsert(conn: sqlite3.Connection) -> None:
            now = self._clock()
            conn.executemany(
                _SQL["upsert_worker"],
                [{**w.to_json(), "queues": _dumps(list(w.queues)), "now": now} for w in workers],
            )

        await self._write(upsert)

    async def list_workers(self, include_gone: bool = False) -> list[WorkerInfo]:
        found = await self._read(
            lambda c: c.execute(_SQL["list_workers"], {"include_gone": include_gone}).fetchall()
        )
        return [rows.worker_info(r) for r in found]

    async def expire_workers(self, timeout_s: float) -> list[str]:
        def expire(conn: sqlite3.Connection) -> list[str]:
            now = self._clock()
            gone = [r["id"] for r in conn.execute(
                _SQL["expire_workers"], {"now": now, "timeout_s": timeout_s}).fetchall()]
            if gone:
                conn.execute(_SQL["expire_leases_of_workers"], {"now": now, "ids": _dumps(gone)})
            return sorted(gone)

        return await self._write(expire)

    # API keys --------------------------------------------------------------------------
    async def insert_keys(self, keys: Sequence[ApiKey]) -> None:
        def insert(conn: sqlite3.Connection) -> None:
            now = self._clock()
            conn.executemany(_KEYS_SQL["insert_key"], [
                {"id": k.id, "tenant": k.tenant, "scopes": ",".join(k.scopes),
                 "key_hash": k.key_hash, "name": k.name, "now": now} for k in keys])

        try:
            await self._write(insert)
        except sqlite3.IntegrityError as exc:
            raise ValueError(f"an API key with this id already exists: {exc}") from exc

    async def get_keys(self, ids: Sequence[str]) -> list[ApiKey]:
        params = {"ids": _dumps(list(ids))}
        found = await self._read(lambda c: c.execute(_KEYS_SQL["get_keys"], params).fetchall())
        return [rows.api_key(r) for r in found]

    async def list_keys(self, tenant: str | None = None) -> list[ApiKey]:
        params = {"tenant": tenant}
        found = await self._read(lambda c: c.execute(_KEYS_SQL["list_keys"], params).fetchall())
        return [rows.api_key(r) for r in found]

    async def revoke_keys(self, ids: Sequence[str]) -> list[str]:
        def revoke(conn: sqlite3.Connection) -> list[str]:
            params = {"ids": _dumps(list(ids)), "now": self._clock()}
            return sorted(r["id"] for r in conn.execute(_KEYS_SQL["revoke_keys"], params))

        return await self._write(revoke)


__all__ = ["SCHEMA_VERSION", "SQLiteStore"]
