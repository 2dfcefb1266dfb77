"""The PostgreSQL store: the source of truth when many processes share one database.

Durability: a write returns only after its transaction committed (with the server's
``synchronous_commit``; the default flushes WAL). Submissions use group commit
(:mod:`.group`): concurrent ``insert_jobs`` calls share one transaction, each in its own
savepoint, and each caller is answered only after that transaction committed.

Time: every lease, heartbeat, schedule and ``now()`` comes from the database clock, so a
worker with a skewed clock neither steals live leases nor loses its own.

Schema: versioned migrations (``sql/NNN_*.sql``) are applied by :meth:`migrate` in one
transaction under an advisory lock, so processes that start together migrate once.
:meth:`open` refuses a database whose schema is missing or of another version.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ...config import redact_url as redact
from ...errors import SchemaMismatch, StoreUnavailable
from ...model import (
    WAITING,
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
)
from .. import rows
from ..recent import window_params
from .core import MIGRATIONS, SCHEMA_VERSION, SQL, Conn, fetch, notify, refresh_jobs
from .errors import translated, where
from .group import GroupCommit
from .keys import KeyMixin
from .leases import LeaseMixin
from .listener import Listener
from .outbox import OutboxMixin
from .submit import dumps, insert_jobs, insert_new_jobs


class PostgresStore(KeyMixin, OutboxMixin, LeaseMixin):
    """The :class:`~conveyor.store.base.Store` port on PostgreSQL (psycopg 3, async pool).

    ``url`` is a libpq URL (``postgresql://user:pass@host:port/db?options=...``).
    ``acquire_timeout_s`` bounds how long a call waits for a connection when the server
    is down before it raises ``StoreUnavailable`` (the API then answers 503).
    ``pipeline``: see :attr:`conveyor.config.Config.postgres_pipeline`; ``max_groups``:
    :attr:`~conveyor.config.Config.postgres_commit_groups`."""

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 10,
                 connect_timeout_s: float = 3.0, acquire_timeout_s: float = 3.0,
                 max_groups: int = 1, pipeline: bool = False) -> None:
        super().__init__(url, min_size=min_size, max_size=max_size,
                         connect_timeout_s=connect_timeout_s,
                         acquire_timeout_s=acquire_timeout_s, pipeline=pipeline)
        self._group = GroupCommit(self._pool, insert_jobs, max_groups=max_groups,
                                  pipeline=pipeline, insert_new=insert_new_jobs)
        self._listener = Listener(url, connect_timeout_s)
        self._opened = False

    def __repr__(self) -> str:
        return f"PostgresStore({redact(self.url)!r})"

    # lifecycle -------------------------------------------------------------------------
    async def _open_pool(self) -> None:
        if not self._opened:
            with translated(self.url):
                await self._pool.open(wait=False)
            self._opened = True

    async def open(self) -> None:
        """Connect and check the schema version; on failure nothing is left running."""
        try:
            await self._open_pool()
            version = await self._tx(self._schema_version)
            self._check_version(version)
        except BaseException:
            await self.close()
            raise

    def _check_version(self, version: int) -> None:
        if version == SCHEMA_VERSION:
            return
        migrate = f"run `conveyor migrate --store {redact(self.url)}`"
        if version == 0:
            problem = f"has no Conveyor schema: {migrate}"
        elif version > SCHEMA_VERSION:
            problem = (f"has schema version {version}, newer than this Conveyor knows "
                       f"({SCHEMA_VERSION}): upgrade Conveyor")
        else:
            problem = (f"has schema version {version}, this Conveyor needs {SCHEMA_VERSION}: "
                       f"{migrate}")
        raise SchemaMismatch(f"PostgreSQL at {where(self.url)} {problem}")

    @staticmethod
    async def _schema_version(conn: Conn) -> int:
        [present] = await fetch(conn, "schema_version_exists")
        if not present["present"]:
            return 0
        [row] = await fetch(conn, "schema_version")
        return int(row["version"] or 0)

    async def close(self) -> None:
        await self._listener.close()
        await self._group.close()
        if self._opened:
            await self._stop_checks()
            await self._pool.close()
            self._opened = False

    async def migrate(self) -> int:
        """Apply the migrations this Conveyor knows and the database lacks, in one
        transaction under an advisory lock (concurrent callers wait, then find nothing
        left to do). Refuses a database newer than this Conveyor."""
        await self._open_pool()

        async def apply(conn: Conn) -> int:
            await conn.execute(SQL["migration_lock"])
            await conn.execute(SQL["create_version_table"])
            current = await self._schema_version(conn)
            if current > SCHEMA_VERSION:
                raise SchemaMismatch(
                    f"PostgreSQL at {where(self.url)} has schema version {current}, newer "
                    f"than this Conveyor ({SCHEMA_VERSION}); upgrade Conveyor")
            for version, sql in MIGRATIONS:
                if version > current:
                    await conn.execute(sql.encode())  # several statements, no parameters
            if current != SCHEMA_VERSION:
                await conn.execute(SQL["clear_schema_version"])
                await conn.execute(SQL["set_schema_version"], {"version": SCHEMA_VERSION})
            return SCHEMA_VERSION

        return await self._tx(apply, script=True)

    async def ping(self) -> None:
        await self._open_pool()
        await self._all("ping")

    async def now(self) -> float:
        row = await self._one("now")
        if row is None:
            raise StoreUnavailable("PostgreSQL returned no time")
        return float(row["now"])

    async def wait_ready(self, queues: Sequence[str], timeout_s: float) -> None:
        """Return soon after work may have become ready in ``queues`` (a notification
        arrived), or after ``timeout_s``. Never raises for a lost connection: waiting
        then degrades to the timeout, i.e. to polling."""
        await self._listener.wait(queues, timeout_s)

    async def wait_outbox(self, timeout_s: float) -> None:
        """Return soon after outbox rows were written (``LISTEN conveyor_outbox``), at
        once if that happened since the previous call, or after ``timeout_s``. Never
        raises for a lost connection: waiting then degrades to the timeout."""
        await self._listener.wait_outbox(timeout_s)

    # submission ------------------------------------------------------------------------
    async def insert_jobs(
        self, jobs: Sequence[NewJob], *, return_jobs: bool = False
    ) -> list[Submitted]:
        """All of ``jobs`` or none, committed (with whatever else shares the group) before
        the answers are returned."""
        if not jobs:
            return []
        with translated(self.url):
            return await self._group.run(jobs, return_jobs)

    # reads -----------------------------------------------------------------------------
    async def _with_operations(self, conn: Conn, job_rows: list[Any]) -> list[Job]:
        if not job_rows:
            return []
        op_rows = await fetch(conn, "operations_of_jobs",
                              {"ids": [str(r["id"]) for r in job_rows]})
        return rows.jobs(job_rows, op_rows)

    async def get_jobs(self, ids: Sequence[str], tenant: str | None = None) -> list[Job]:
        async def read(conn: Conn) -> list[Job]:
            return await self._with_operations(conn, await _select_jobs(conn, ids, tenant))

        return await self._read(read)

    async def list_jobs(self, flt: JobFilter) -> list[Job]:
        async def read(conn: Conn) -> list[Job]:
            found = await fetch(conn, "list_jobs", {
                "tenant": flt.tenant, "status": flt.status.value if flt.status else None,
                "queue": flt.queue, "task": flt.task, "after": flt.after, "limit": flt.limit},
                prepare=False)
            return await self._with_operations(conn, found)

        return await self._read(read)

    @staticmethod
    def _op_params(flt: OpFilter) -> dict[str, Any]:
        return {
            "tenant": flt.tenant, "status": flt.status.value if flt.status else None,
            "queue": flt.queue, "task": flt.task, "job_id": flt.job_id,
            "ids": list(flt.ids) if flt.ids is not None else None,
        }

    async def list_operations(self, flt: OpFilter) -> list[Operation]:
        found = await self._all("list_operations", {
            **self._op_params(flt), "after_seq": flt.after_seq or 0, "limit": flt.limit},
            prepare=False)
        return [rows.operation(r) for r in found]

    async def ready_depths(self, cap: int) -> dict[str, int]:
        return {str(r["queue"]): int(r["depth"])
                for r in await self._all("ready_depths", {"cap": cap})}

    async def stats(self, tenant: str | None = None) -> list[QueueStats]:
        async def read(conn: Conn) -> list[QueueStats]:
            params = {"tenant": tenant}
            counts: dict[str, dict[str, int]] = {}
            for row in await fetch(conn, "stats_counts", params):
                counts.setdefault(row["queue"], {s.value: 0 for s in OpStatus})[
                    row["status"]] = int(row["n"])
            oldest: dict[str, float] = {}
            for row in await fetch(conn, "stats_waiting", params):
                by_status = counts.setdefault(row["queue"], {s.value: 0 for s in OpStatus})
                for status in WAITING:
                    by_status[status.value] = int(row[status.value])
                if row["age_s"] is not None:
                    oldest[row["queue"]] = float(row["age_s"])
            recent = {r["queue"]: r for r in await fetch(conn, "stats_recent",
                                                         {**params, **window_params()})}
            return [
                QueueStats(
                    queue=queue,
                    counts=by_status,
                    oldest_ready_age_s=max(0.0, oldest[queue]) if queue in oldest else None,
                    finished_last_1m=int(recent[queue]["last_1m"]) if queue in recent else 0,
                    finished_last_5m=int(recent[queue]["last_5m"]) if queue in recent else 0,
                    failed_last_5m=int(recent[queue]["failed_5m"]) if queue in recent else 0,
                )
                for queue, by_status in sorted(counts.items())
            ]

        return await self._read(read)

    # changes by clients ----------------------------------------------------------------
    async def cancel_jobs(self, ids: Sequence[str], tenant: str | None = None) -> list[str]:
        async def cancel(conn: Conn) -> list[str]:
            found = [str(r["id"]) for r in await _select_jobs(conn, ids, tenant)]
            if found:
                params = {"ids": found}
                cancelled = await fetch(conn, "cancel_waiting", params)
                await conn.execute(SQL["cancel_running"], params)
                await refresh_jobs(conn, found)
                await notify(conn, {r["queue"] for r in cancelled})  # keys may move on
            return found

        return await self._tx(cancel)

    async def replay(self, flt: OpFilter) -> list[str]:
        async def replay(conn: Conn) -> list[str]:
            found = await fetch(conn, "replay", self._op_params(flt))
            await refresh_jobs(conn, {str(r["job_id"]) for r in found})
            await notify(conn, {r["queue"] for r in found})
            return [str(r["id"]) for r in found]

        return await self._tx(replay)

    # registry --------------------------------------------------------------------------
    async def upsert_tasks(self, tasks: Sequence[TaskInfo]) -> None:
        async def upsert(conn: Conn) -> None:
            async with conn.cursor() as cur:
                await cur.executemany(SQL["upsert_task"], [
                    {**t.to_json(), "schema": dumps(t.schema)}
                    for t in sorted(tasks, key=lambda t: t.name)])

        await self._tx(upsert)

    async def list_tasks(self) -> list[TaskInfo]:
        return [rows.task_info(r) for r in await self._all("list_tasks")]

    async def upsert_workers(self, workers: Sequence[WorkerInfo]) -> None:
        async def upsert(conn: Conn) -> None:
            async with conn.cursor() as cur:
                await cur.executemany(SQL["upsert_worker"], [
                    {**w.to_json(), "queues": dumps(list(w.queues))}
                    for w in sorted(workers, key=lambda w: w.id)])

        await self._tx(upsert)

    async def list_workers(self, include_gone: bool = False) -> list[WorkerInfo]:
        found = await self._all("list_workers", {"include_gone": include_gone})
        return [rows.worker_info(r) for r in found]


async def _select_jobs(conn: Conn, ids: Sequence[str], tenant: str | None) -> list[Any]:
    """The rows of the jobs ``ids`` that exist, and belong to ``tenant`` when one is
    given. The tenant is checked on the rows, not in the statement (see select_jobs)."""
    found = await fetch(conn, "select_jobs", {"ids": list(ids)})
    return found if tenant is None else [r for r in found if r["tenant"] == tenant]


__all__ = ["SCHEMA_VERSION", "PostgresStore", "insert_jobs"]
