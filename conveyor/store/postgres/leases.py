"""The worker side of the PostgreSQL store: claims, heartbeats, outcomes, rescue.

Claims scale across many workers on many machines: ``FOR UPDATE SKIP LOCKED`` hands each
ready row to one claimer without waiting, and per-key order is enforced with a key lock
(a transaction-scoped advisory lock on ``(queue, key)``) taken before the order check is
made again in a *new* statement. That second snapshot sees every claim committed by the
key's previous holders, so two operations of one key are never running at once, even
when submissions commit out of ``seq`` order or a replay races a claim. A head of a queue
without keys needs no key lock: it is claimed in one statement, as its own transaction, and
so is a batch of outcomes of jobs of one operation (one round trip each instead of four or
five: at low rates each costs a wake-up of both processes).

All times are the database's (``now()``), so workers' clocks do not matter.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

from psycopg.rows import DictRow

from ...model import Claim, Lease, LeaseState, Outcome
from .. import rows
from ..recent import window_params
from .core import SQL, Conn, PgCore, fetch, notify, refresh_jobs
from .submit import dumps

_SINGLE_JOB_STATUS = {"single_op": list(rows.JOB_STATUS_OF_SINGLE),
                      "single_job": list(rows.JOB_STATUS_OF_SINGLE.values())}
"""complete_many's map from an operation's status to its one-operation job's."""


class LeaseMixin(PgCore):
    def __init__(self, url: str, **options: Any) -> None:
        super().__init__(url, **options)
        self._keyed_heads: set[str] = set()  # queues whose last claim met a key
        self._multi_op_outcomes = False  # whether the last outcome batch met a larger job

    async def claim(
        self, queues: Sequence[str], worker_id: str, limit: int, lease_s: float
    ) -> list[Claim]:
        """Lease up to ``limit`` ready operations, one queue after the other in the given
        order (by priority, then submission order within a queue).

        A queue whose head has no key is claimed in one statement (``claim_head``); one
        whose head has a key in the two of the key lock (``claim_candidates``, then
        ``claim_update``). A queue remembers which it needed last, so a queue of keyed
        work does not try the one statement first every time."""
        if limit <= 0 or not queues:
            return []
        found: list[DictRow] = []
        for queue in queues:
            remaining = limit - len(found)
            if remaining <= 0:
                break
            params = {"queue": queue, "limit": remaining, "worker_id": worker_id,
                      "lease_s": lease_s}
            if queue not in self._keyed_heads:
                head = await self._all("claim_head", params)
                if not head[0]["keyed"]:
                    found.extend(r for r in head if r["id"] is not None)
                    continue
            keyed = await self._tx(partial(self._claim_keyed, params=params))
            if any(r["key"] is not None for r in keyed):
                self._keyed_heads.add(queue)
            else:
                self._keyed_heads.discard(queue)
            found.extend(keyed)
        return rows.claims_in_order(found)

    @staticmethod
    async def _claim_keyed(conn: Conn, params: dict[str, object]) -> list[DictRow]:
        candidates = await fetch(conn, "claim_candidates", params)
        if not candidates:
            return []
        found = await fetch(conn, "claim_update", {**params,
                                                   "seqs": [c["seq"] for c in candidates]})
        if found:
            await conn.execute(SQL["mark_jobs_running"],
                               {"ids": sorted({str(r["job_id"]) for r in found})})
        return found

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
        notifies its queue, since the key's next operation may now be ready.

        A batch whose operations are each their job's only one is one statement, its own
        transaction; a batch with an operation of a larger job is that statement in a
        transaction that also derives those jobs' statuses. The store remembers which
        the last batch needed and tries that first."""
        if not outcomes:
            return []
        params = {
            "op_ids": [o.op_id for o in outcomes],
            "tokens": [o.lease_token for o in outcomes],
            "kinds": [o.kind.value for o in outcomes],
            "results": [dumps(o.result) for o in outcomes],
            "errors": [dumps(o.error.to_json()) if o.error else None for o in outcomes],
            "retry_in_s": [float(o.retry_in_s or 0.0) for o in outcomes],
            **_SINGLE_JOB_STATUS,
        }
        found: list[DictRow] = []
        if not self._multi_op_outcomes:
            found = await self._all("complete_many", {**params, "single_only": True})
            self._multi_op_outcomes = bool(found[0]["multi"])
        if self._multi_op_outcomes:

            async def complete(conn: Conn) -> list[DictRow]:
                done = await fetch(conn, "complete_many", {**params, "single_only": False})
                await refresh_jobs(conn, {str(r["job_id"]) for r in done
                                          if r["job_ops"] is not None and r["job_ops"] != 1})
                return done

            found = await self._tx(complete)
            self._multi_op_outcomes = any(r["job_ops"] not in (None, 1) for r in found)
        recorded = {(str(r["id"]), int(r["lease_token"])) for r in found if r["id"] is not None}
        accepted: list[bool] = []
        for out in outcomes:  # a lease is recorded once, even if listed twice
            accepted.append((out.op_id, out.lease_token) in recorded)
            recorded.discard((out.op_id, out.lease_token))
        return accepted

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

    async def expire_workers(self, timeout_s: float, forget_after_s: float) -> list[str]:
        """Also folds the running totals of closed connections (006_op_totals.sql) and
        drops the finishes counted in slots out of the rates' five minutes
        (007_op_recent.sql): this runs every rescue interval in every worker."""

        async def expire(conn: Conn) -> list[str]:
            gone = [str(r["id"]) for r in await fetch(
                conn, "expire_workers", {"timeout_s": timeout_s, "forget_after_s": forget_after_s})]
            if gone:
                await conn.execute(SQL["expire_leases_of_workers"], {"ids": gone})
            await conn.execute(SQL["fold_op_totals"])
            await conn.execute(SQL["prune_op_recent"], window_params())
            return sorted(gone)

        return await self._tx(expire)

