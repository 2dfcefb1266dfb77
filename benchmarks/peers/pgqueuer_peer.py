"""PgQueuer on the same PostgreSQL server as Conveyor's postgres tier (its own database).

Workers are ``processes`` separate processes (``python -m benchmarks.peers.pgqueuer_peer
DSN``), each a QueueManager with default settings; CPU-bound entrypoints run in a thread
(PgQueuer entrypoints must be ``async``). The outcome each job leaves is its row in
``pgqueuer_log``: its timestamps are the store's own (``picked``, ``successful``).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pgqueuer
from pgqueuer import AsyncpgDriver, Queries, QueueManager

from .harness import REPO, procstat


def _burn(ms: float) -> None:
    deadline = time.thread_time() + ms / 1000.0
    while time.thread_time() < deadline:
        pass


async def worker_main(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    qm = QueueManager(Queries(AsyncpgDriver(conn)))

    @qm.entrypoint("noop")
    async def noop(job: pgqueuer.Job) -> None:
        return None

    @qm.entrypoint("cpu")
    async def cpu(job: pgqueuer.Job) -> None:
        ms = float(job.payload.decode()) if job.payload else 10.0
        await asyncio.to_thread(_burn, ms)

    await qm.run(log_aggregation_interval=timedelta(0))


class Peer:
    name = "pgqueuer"
    version = pgqueuer.__version__
    durability = ("PostgreSQL (fsync=on, synchronous_commit=on): every enqueue and status "
                  "change is a committed, flushed transaction")

    def __init__(self, opts: Any) -> None:
        if not opts.postgres:
            raise SystemExit("--postgres postgresql://... is required")
        self.dsn = opts.postgres
        self.settings = {"batch_size": 10, "driver": "asyncpg",
                         "processes": opts.processes}
        self.conn: asyncpg.Connection | None = None
        self._sent: dict[int, float] = {}

    def service_pids(self) -> list[int]:
        pid = procstat.listening_pid(urlsplit(self.dsn).port or 5432)
        return [pid] if pid else []

    async def _c(self) -> asyncpg.Connection:
        if self.conn is None:
            self.conn = await asyncpg.connect(self.dsn)
            queries = Queries(AsyncpgDriver(self.conn))
            if not await queries.schema_is_installed():
                await queries.install()
        return self.conn

    async def setup(self) -> None:
        conn = await self._c()
        await conn.execute("TRUNCATE pgqueuer, pgqueuer_log, pgqueuer_statistics")
        self._sent.clear()

    async def enqueue_many(self, task: str, args: dict[str, Any], n: int) -> list[int]:
        queries = Queries(AsyncpgDriver(await self._c()))
        payload = str(args["ms"]).encode() if "ms" in args else None
        ids: list[int] = []
        for start in range(0, n, 1000):
            size = min(1000, n - start)
            ids.extend(await queries.enqueue([task] * size, [payload] * size, [0] * size))
        return ids

    async def submit(self, task: str, args: dict[str, Any]) -> int:
        queries = Queries(AsyncpgDriver(await self._c()))
        payload = str(args["ms"]).encode() if "ms" in args else None
        sent = time.time()
        (job_id,) = await queries.enqueue(task, payload)
        self._sent[int(job_id)] = sent
        return int(job_id)

    def start_workers(self, processes: int) -> list[subprocess.Popen[bytes]]:
        log = open(f"/tmp/conveyor-bench-pgqueuer-{os.getpid()}.log", "ab")  # noqa: SIM115
        return [subprocess.Popen(
            [sys.executable, "-m", "benchmarks.peers.pgqueuer_peer", self.dsn], cwd=REPO,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            for _ in range(processes)]

    async def finished(self, ids: list[int]) -> int:
        conn = await self._c()
        return int(await conn.fetchval(
            "SELECT count(DISTINCT job_id) FROM pgqueuer_log WHERE job_id = ANY($1) "
            "AND status IN ('successful', 'exception', 'canceled', 'deleted')", ids))

    async def times(self, ids: list[int]) -> list[tuple[float | None, float | None,
                                                         float | None]]:
        conn = await self._c()
        rows = await conn.fetch(
            "SELECT job_id, status::text AS status, extract(epoch FROM created) AS t "
            "FROM pgqueuer_log WHERE job_id = ANY($1)", ids)
        by: dict[int, dict[str, float]] = {}
        for r in rows:
            by.setdefault(int(r["job_id"]), {})[r["status"]] = float(r["t"])
        out = []
        for job_id in ids:
            t = by.get(job_id, {})
            out.append((self._sent.get(job_id, t.get("queued")), t.get("picked"),
                        t.get("successful")))
        return out

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.close()


if __name__ == "__main__":
    asyncio.run(worker_main(sys.argv[1]))
