"""The worker side of the SQLite store: claims, heartbeats, outcomes, release, rescue.

Every change goes through the writer thread's group commit (:mod:`.core`); claims stay
exclusive, and per-key order holds, across processes sharing the file because every
write transaction takes SQLite's write lock (``BEGIN IMMEDIATE``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from ...model import Claim, Lease, LeaseState, Outcome
from .. import rows
from .core import SQL, SQLiteCore, dumps


class LeaseMixin(SQLiteCore):
    """The worker-side methods of the store port (see :mod:`conveyor.store.base`)."""

    async def claim(
        self, queues: Sequence[str], worker_id: str, limit: int, lease_s: float
    ) -> list[Claim]:
        def claim(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
            found: list[tuple[Any, ...]] = []
            for queue in queues:  # one indexed walk per queue, in the worker's queue order
                remaining = limit - len(found)
                if remaining <= 0:
                    break
                params = {"queue": queue, "worker_id": worker_id, "lease_s": lease_s,
                          "limit": remaining}
                found.extend(self._claim(conn, SQL["claim"], params))
            return found

        # Rows become Claims here, on the caller's thread: the writer thread, which every
        # write of the process waits for, only runs SQL.
        return rows.claims_of_tuples(await self._write(claim, first=True))

    async def claim_ids(self, op_ids: Sequence[str], worker_id: str, lease_s: float) -> list[Claim]:
        params = {"ids": dumps(list(op_ids)), "worker_id": worker_id, "lease_s": lease_s}
        return rows.claims_of_tuples(
            await self._write(self._claim, SQL["claim_ids"], params, first=True))

    def _claim(self, conn: sqlite3.Connection, sql: str, params: dict[str, Any]
               ) -> list[tuple[Any, ...]]:
        """Rows as plain tuples in ``rows.CLAIM_COLUMNS`` order (the statements' RETURNING)."""
        cursor = conn.cursor()
        cursor.row_factory = None
        found: list[tuple[Any, ...]] = cursor.execute(
            sql, {**params, "now": self._clock()}).fetchall()
        if found:
            conn.execute(SQL["mark_jobs_running"], {"ids": dumps(sorted({r[1] for r in found}))})
        return found

    async def extend_leases(self, leases: Sequence[Lease], lease_s: float) -> list[LeaseState]:
        def extend(conn: sqlite3.Connection) -> list[LeaseState]:
            now = self._clock()
            states = []
            for lease in leases:
                row = conn.execute(
                    SQL["extend_lease"],
                    {"op_id": lease.op_id, "lease_token": lease.lease_token, "now": now,
                     "lease_s": lease_s},
                ).fetchone()
                states.append(LeaseState(lease.op_id, row is not None,
                                         bool(row and row["cancel_requested"])))
            return states

        return await self._write(extend)

    async def complete_many(self, outcomes: Sequence[Outcome]) -> list[bool]:
        """One fenced statement for the whole batch (see ``complete_many`` in queries.sql),
        then the status of the jobs it touched: set from the outcome for a job of one
        operation, derived from all of its operations for the others."""
        batch = dumps([
            [out.op_id, out.lease_token, out.kind.value, dumps(out.result),
             dumps(out.error.to_json()) if out.error else None, out.retry_in_s]
            for out in outcomes
        ])

        def complete(conn: sqlite3.Connection) -> list[bool]:
            found = conn.execute(
                SQL["complete_many"], {"batch": batch, "now": self._clock()}
            ).fetchall()
            self._count_ended(conn, found)
            # found: (id, job_id, tenant, queue, status, job_ops), read by position
            single = [[r[1], rows.JOB_STATUS_OF_SINGLE[r[4]]] for r in found if r[5] == 1]
            if single:
                conn.execute(SQL["end_single_jobs"], {"jobs": dumps(single)})
            self._refresh_jobs(conn, {r[1] for r in found if r[5] != 1})
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
                    SQL["release"],
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
                SQL["rescue_expired"], {"now": self._clock(), "limit": limit}
            ).fetchall()
            self._count_ended(conn, found)
            self._refresh_jobs(conn, {r["job_id"] for r in found})
            return [r["id"] for r in found]

        return await self._write(rescue)

