"""SQLite store: the embedded tier's source of truth (one file, WAL mode).

Durability: every write commits before its method returns; with ``synchronous=FULL``
(the default) the commit is fsynced, so an acknowledged submission survives ``kill -9``
and power loss. Several processes may share one file: writes take SQLite's write lock
(``BEGIN IMMEDIATE``), so claims stay exclusive across processes.

The parts: :mod:`.core` (connections, the writer thread's group commit), :mod:`.leases`
(the worker side), and here the lifecycle, submissions, reads, client changes, the
registries and API keys.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from typing import Any, cast

from ...errors import SchemaMismatch
from ...keys import ApiKey
from ...model import (
    Job,
    JobFilter,
    NewJob,
    Operation,
    OpFilter,
    OpStatus,
    QueueStats,
    Submitted,
    TaskInfo,
    WorkerInfo,
    new_id,
    new_ids,
)
from .. import rows
from ..recent import slot_of, window_params
from ..sqlfile import load_blocks, migrations
from .core import SQL, dumps, insert_rows, statements
from .leases import LeaseMixin

_KEYS_SQL = load_blocks(__name__ + ".sql", "keys.sql")
_MIGRATIONS = migrations(__name__ + ".sql")
SCHEMA_VERSION = _MIGRATIONS[-1][0]


class SQLiteStore(LeaseMixin):
    """The :class:`~conveyor.store.base.Store` port on a SQLite file."""

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
            row = conn.execute(SQL["schema_version"]).fetchone()
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
                    for statement in statements(sql):
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
            return await self._write(self._insert_each, jobs, True)
        return await self._write(self._insert_all, jobs)

    def _insert_each(self, conn: sqlite3.Connection, jobs: Sequence[NewJob],
                     return_jobs: bool = False) -> list[Submitted]:
        """One job after the other, each answered alone: created, or the job that holds
        its idempotency key. With ``return_jobs``, each created job comes as stored, built
        from the values just inserted and the row ids SQLite gave its operations (their
        ``seq``) rather than returned by the inserts: a statement that returns a row takes
        SQLite two steps, and every step gives up the GIL and waits to take it back (see
        :meth:`SQLiteCore._group`). One statement per row: for the one-job submissions
        that want their jobs, fewer statements than a multi-row insert."""
        now = self._clock()
        answers: list[Submitted] = []
        for job in jobs:
            if conn.execute(SQL["insert_job"], self._job_row(job, now)).rowcount == 0:
                answers.append(self._existing(conn, job))  # its idempotency key (or id) exists
                continue
            op_values = self._operation_rows(job, now)
            seqs = [cast(int, conn.execute(SQL["insert_operation"], values).lastrowid)
                    for values in op_values]  # set by every insert of a row
            answers.append(Submitted(job.id, created=True, job=rows.created_job(
                job, op_values, seqs, now) if return_jobs else None))
        return answers

    def _insert_all(self, conn: sqlite3.Connection, jobs: Sequence[NewJob]) -> list[Submitted]:
        if any(job.idempotency_key is not None for job in jobs):
            return self._insert_each(conn, jobs)
        now = self._clock()
        # No idempotency key: a job row is always new, so the jobs go in many to a
        # statement (a primary-key clash raises IntegrityError: ids are random, a bug
        # upstream), then the operations, in input order (seq is submission order).
        insert_rows(conn, "insert_jobs_rows", [
            (job.id, job.tenant, job.queue, dumps(job.metadata), dumps(job.headers),
             job.request_hash, now) for job in jobs])
        ids = iter(new_ids(sum(len(job.operations) for job in jobs)))
        insert_rows(conn, "insert_operations_rows", [
            (next(ids), job.id, job.tenant, job.queue, op.task, dumps(op.args), op.key,
             op.priority, op.initial_status.value, op.max_attempts, op.timeout_s, now,
             now + op.delay_s, headers, len(job.operations))
            for job in jobs for headers in (dumps(job.headers),) for op in job.operations])
        return [Submitted(job.id, created=True) for job in jobs]

    @staticmethod
    def _job_row(job: NewJob, now: float) -> dict[str, Any]:
        return {
            "id": job.id, "tenant": job.tenant, "queue": job.queue,
            "metadata": dumps(job.metadata), "headers": dumps(job.headers),
            "idempotency_key": job.idempotency_key, "request_hash": job.request_hash,
            "now": now,
        }

    @staticmethod
    def _operation_rows(job: NewJob, now: float) -> list[dict[str, Any]]:
        headers = dumps(job.headers)
        return [
            {
                "id": new_id(), "job_id": job.id, "tenant": job.tenant, "queue": job.queue,
                "task": op.task, "args": dumps(op.args), "key": op.key,
                "priority": op.priority,
                "status": op.initial_status.value,
                "max_attempts": op.max_attempts, "timeout_s": op.timeout_s, "now": now,
                "run_at": now + op.delay_s, "headers": headers, "job_ops": len(job.operations),
            }
            for op in job.operations
        ]

    @staticmethod
    def _existing(conn: sqlite3.Connection, job: NewJob) -> Submitted:
        """The answer for ``job`` when its insert created nothing: the job that holds its
        idempotency key (a conflict when the bodies differ)."""
        row = conn.execute(
            SQL["find_idempotent"],
            {"tenant": job.tenant, "idempotency_key": job.idempotency_key},
        ).fetchone()
        if row is None:  # a primary-key clash: ids are random, so this is a bug upstream
            raise sqlite3.IntegrityError(f"job id {job.id} already exists")
        same = row["request_hash"] == job.request_hash
        return Submitted(row["id"], created=False, conflict=not same)

    # reads -----------------------------------------------------------------------------
    @staticmethod
    def _with_operations(conn: sqlite3.Connection, job_rows: list[sqlite3.Row]) -> list[Job]:
        ids = dumps([row["id"] for row in job_rows])
        op_rows = conn.execute(SQL["operations_of_jobs"], {"ids": ids}).fetchall()
        return rows.jobs(job_rows, op_rows)

    async def get_jobs(self, ids: Sequence[str], tenant: str | None = None) -> list[Job]:
        def read(conn: sqlite3.Connection) -> list[Job]:
            found = conn.execute(
                SQL["select_jobs"], {"ids": dumps(list(ids)), "tenant": tenant}
            ).fetchall()
            return self._with_operations(conn, found)

        return await self._read(read)

    async def list_jobs(self, flt: JobFilter) -> list[Job]:
        def read(conn: sqlite3.Connection) -> list[Job]:
            found = conn.execute(
                SQL["list_jobs"],
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
            "ids": dumps(list(flt.ids)) if flt.ids is not None else None,
        }

    async def list_operations(self, flt: OpFilter) -> list[Operation]:
        params = {**self._op_params(flt), "after_seq": flt.after_seq or 0, "limit": flt.limit}
        found = await self._read(lambda c: c.execute(SQL["list_operations"], params).fetchall())
        return [rows.operation(r) for r in found]

    async def ready_depths(self, cap: int) -> dict[str, int]:
        def read(conn: sqlite3.Connection) -> dict[str, int]:
            return {row["queue"]: int(row["depth"])
                    for row in conn.execute(SQL["ready_depths"], {"cap": cap})}

        return await self._read(read)

    async def stats(self, tenant: str | None = None) -> list[QueueStats]:
        def read(conn: sqlite3.Connection) -> list[QueueStats]:
            now = self._clock()
            params = {"tenant": tenant, "now": now, "slot": slot_of(now), **window_params()}
            counts: dict[str, dict[str, int]] = {}
            for row in conn.execute(SQL["stats_counts"], params):
                counts.setdefault(row["queue"], {s.value: 0 for s in OpStatus})[row["status"]] = (
                    row["n"]
                )
            oldest = {r["queue"]: r["oldest"] for r in conn.execute(SQL["stats_oldest_ready"],
                                                                     params)}
            recent = {r["queue"]: r for r in conn.execute(SQL["stats_recent"], params)}
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
                    SQL["select_jobs"], {"ids": dumps(list(ids)), "tenant": tenant}
                )
            ]
            params = {"ids": dumps(found), "now": self._clock()}
            self._count_ended(conn, conn.execute(SQL["cancel_waiting"], params).fetchall())
            conn.execute(SQL["cancel_running"], params)
            conn.execute(SQL["refresh_job_status"], params)
            return found

        return await self._write(cancel)

    async def replay(self, flt: OpFilter) -> list[str]:
        def replay(conn: sqlite3.Connection) -> list[str]:
            found = conn.execute(
                SQL["replay"], {**self._op_params(flt), "now": self._clock()}
            ).fetchall()
            self._count_ended(conn, found, -1)
            self._refresh_jobs(conn, {r["job_id"] for r in found})
            return [r["id"] for r in found]

        return await self._write(replay)

    # registry --------------------------------------------------------------------------
    async def upsert_tasks(self, tasks: Sequence[TaskInfo]) -> None:
        def upsert(conn: sqlite3.Connection) -> None:
            now = self._clock()
            conn.executemany(
                SQL["upsert_task"],
                [{**t.to_json(), "schema": dumps(t.schema), "now": now} for t in tasks],
            )

        await self._write(upsert)

    async def list_tasks(self) -> list[TaskInfo]:
        found = await self._read(lambda c: c.execute(SQL["list_tasks"]).fetchall())
        return [rows.task_info(r) for r in found]

    async def upsert_workers(self, workers: Sequence[WorkerInfo]) -> None:
        def upsert(conn: sqlite3.Connection) -> None:
            now = self._clock()
            conn.executemany(
                SQL["upsert_worker"],
                [{**w.to_json(), "queues": dumps(list(w.queues)), "now": now} for w in workers],
            )

        await self._write(upsert)

    async def list_workers(self, include_gone: bool = False) -> list[WorkerInfo]:
        found = await self._read(
            lambda c: c.execute(SQL["list_workers"], {"include_gone": include_gone}).fetchall()
        )
        return [rows.worker_info(r) for r in found]

    async def expire_workers(self, timeout_s: float, forget_after_s: float) -> list[str]:
        def expire(conn: sqlite3.Connection) -> list[str]:
            now = self._clock()
            conn.execute(SQL["forget_gone_workers"], {"now": now, "forget_after_s": forget_after_s})
            gone = [r["id"] for r in conn.execute(
                SQL["expire_workers"], {"now": now, "timeout_s": timeout_s}).fetchall()]
            if gone:
                conn.execute(SQL["expire_leases_of_workers"], {"now": now, "ids": dumps(gone)})
            conn.execute(SQL["prune_op_recent"], {"slot": slot_of(now), **window_params()})
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
        params = {"ids": dumps(list(ids))}
        found = await self._read(lambda c: c.execute(_KEYS_SQL["get_keys"], params).fetchall())
        return [rows.api_key(r) for r in found]

    async def list_keys(self, tenant: str | None = None) -> list[ApiKey]:
        params = {"tenant": tenant}
        found = await self._read(lambda c: c.execute(_KEYS_SQL["list_keys"], params).fetchall())
        return [rows.api_key(r) for r in found]

    async def revoke_keys(self, ids: Sequence[str]) -> list[str]:
        def revoke(conn: sqlite3.Connection) -> list[str]:
            params = {"ids": dumps(list(ids)), "now": self._clock()}
            return sorted(r["id"] for r in conn.execute(_KEYS_SQL["revoke_keys"], params))

        return await self._write(revoke)


__all__ = ["SCHEMA_VERSION", "SQLiteStore"]
