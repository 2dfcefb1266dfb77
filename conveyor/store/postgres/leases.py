"""The worker side of the PostgreSQL store: claims, heartbeats, outcomes, rescue.

Claims scale across many workers on many machines: ``FOR UPDATE SKIP LOCKED`` hands each
ready row to one claimer without waiting, and per-key order is enforced with a key lock
(a transaction-scoped advisory lock on ``(queue, key)``) taken before the order check is
made again in a *new* statement. That second snapshot sees every claim committed by the
key's previous holders, so two operations of one key are never running at once, even
when submissions commit out of ``seq`` order or a replay races a claim.

All times are the database's (``now()``), so workers' clocks do not matter.
"""

from __future__ import annotations

from collections.abc import Sequence

from psycopg.rows import DictRow

from ...model import Claim, Lease, LeaseState, Outcome, OutcomeKind
from .. import rows
from .core import SQL, Conn, PgCore, fetch, notify, refresh_jobs
from .submit import dumps


class LeaseMixin(PgCore):
    async def claim(
        self, queues: Sequence[str], worker_id: str, limit: int, lease_s: float
    ) -> list[Claim]:
        """Lease up to ``limit`` ready operations, one queue after the other in the given
        order (by priority, then submission order within a queue)."""
        if limit <= 0 or not queues:
            return []

        async def claim(conn: Conn) -> list[Claim]:
            found: list[DictRow] = []
            for queue in queues:
                remaining = limit - len(found)
                if remaining <= 0:
                    break
                candidates = await fetch(conn, "claim_candidates",
                                         {"queue": queue, "limit": remaining})
                if not candidates:
                    continue
                found.extend(await fetch(conn, "claim_update", {
                    "seqs": [c["seq"] for c in candidates], "worker_id": worker_id,
                    "lease_s": lease_s}))
            if found:
                await conn.execute(SQL["mark_jobs_running"],
                                   {"ids": sorted({str(r["job_id"]) for r in found})})
            return rows.claims_in_order(found)

        return await self._tx(claim)

    async def claim_ids(self, op_ids: Sequence[str], worker_id: str, lease_s: float) -> list[Claim]:
        if not op_ids:
            return []

        async def claim(conn: Conn) -> list[Claim]:
            found = await fetch(conn, "claim_ids", {"ids": list(op_ids), "worker_id": worker_id,
                                                    "lease_s": lease_s})
            if found:
                await conn.execute(SQL["mark_jobs_running"],
                                   {"ids": sorted({str(r["job_id"]) for r in found})})
            return rows.claims_in_order(found)

        return await self._tx(claim)

    async def extend_leases(self, leases: Sequence[Lease], lease_s: float) -> list[LeaseState]:
        if not leases:
            return []
        found = await self._all("extend_leases", {
            "op_ids": [le.op_id for le in leases], "tokens": [le.lease_token for le in leases],
            "lease_s": lease_s})
        held = {(str(r["id"]), int(r["lease_token"])): bool(r["cancel_requested"])
                for r in found}
        return [LeaseState(le.op_id, (le.op_id, le.lease_token) in held,
                           held.get((le.op_id, le.lease_token), False)) for le in leases]

    async def complete_many(self, outcomes: Sequence[Outcome]) -> list[bool]:
        """Fenced outcomes in one transaction; a finished keyed operation (or a retry)
        notifies its queue, since the key's next operation may now be ready."""
        if not outcomes:
            return []

        async def complete(conn: Conn) -> list[bool]:
            found = await fetch(conn, "complete_many", {
                "op_ids": [o.op_id for o in outcomes],
                "tokens": [o.lease_token for o in outcomes],
                "kinds": [o.kind.value for o in outcomes],
                "results": [dumps(o.result) for o in outcomes],
                "errors": [dumps(o.error.to_json()) if o.error else None for o in outcomes],
                "retry_in_s": [float(o.retry_in_s or 0.0) for o in outcomes],
            })
            recorded = {(str(r["id"]), int(r["lease_token"])) for r in found}
            single = sorted((str(r["job_id"]), rows.JOB_STATUS_OF_SINGLE[r["status"]])
                            for r in found if r["job_ops"] == 1)
            if single:
                await conn.execute(SQL["end_single_jobs"], {
                    "ids": [job_id for job_id, _ in single],
                    "statuses": [status for _, status in single]})
            await refresh_jobs(conn, {str(r["job_id"]) for r in found if r["job_ops"] != 1})
            await notify(conn, {r["queue"] for r in found
                                if r["key"] is not None or r["kind"] == OutcomeKind.RETRY})
            accepted: list[bool] = []
            for out in outcomes:  # a lease is recorded once, even if listed twice
                accepted.append((out.op_id, out.lease_token) in recorded)
                recorded.discard((out.op_id, out.lease_token))
            return accepted

        return await self._tx(complete)

    async def release(self, leases: Sequence[Lease]) -> int:
        if not leases:
            return 0

        async def release(conn: Conn) -> int:
            found: list[DictRow] = []
            for lease in leases:
                found.extend(await fetch(conn, "release", {
                    "op_id": lease.op_id, "lease_token": lease.lease_token}))
            await refresh_jobs(conn, {str(r["job_id"]) for r in found})
            await notify(conn, {r["queue"] for r in found})
            return len(found)

        return await self._tx(release)

    async def rescue_expired(self, limit: int) -> list[str]:
        """Safe from many processes at once: rows another rescuer holds are skipped."""

        async def rescue(conn: Conn) -> list[str]:
            found = await fetch(conn, "rescue_expired", {"limit": limit})
            await refresh_jobs(conn, {str(r["job_id"]) for r in found})
            await notify(conn, {r["queue"] for r in found})
            return [str(r["id"]) for r in found]

        return await self._tx(rescue)

    async def expire_workers(self, timeout_s: float) -> list[str]:
        """Also folds the running totals of closed connections (006_op_totals.sql): this
        runs every rescue interval in every worker."""

        async def expire(conn: Conn) -> list[str]:
            gone = [str(r["id"]) for r in await fetch(conn, "expire_workers",
                                                      {"timeout_s": timeout_s})]
            if gone:
                await conn.execute(SQL["expire_leases_of_workers"], {"ids": gone})
            await conn.execute(SQL["fold_op_totals"])
            return sorted(gone)

        return await self._tx(expire)

