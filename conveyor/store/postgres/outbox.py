"""The outbox side of the PostgreSQL store (Kafka tier): see
:class:`conveyor.store.base.OutboxStore` for the guarantees.

Rows are written by triggers (``003_outbox.sql``), so every path that makes an operation
ready (submission, retry, rescue, release, replay) writes its row in its own transaction
without knowing about the outbox. Leasing delivered operations uses the same key lock and
two-statement order check as :meth:`LeaseMixin.claim`, so log and store claims mix safely;
like a claim, a delivery without keyed operations needs no key lock and is one statement.
The relay's claims and deletions commit without waiting for the WAL flush: a server crash
can undo them, which makes rows publish twice (harmless), never lost.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

from .. import rows
from ..base import Delivered, OutboxEntry
from ..sqlfile import load_blocks
from .core import SQL, Conn, PgCore, fetch, rows_of

OUTBOX_SQL = load_blocks(__package__ + ".sql", "outbox.sql")


async def _fetch(conn: Conn, name: str, params: dict[str, Any] | None = None) -> list[Any]:
    async with conn.cursor() as cur:
        await cur.execute(OUTBOX_SQL[name], params)
        return await rows_of(cur)


class OutboxMixin(PgCore):
    def __init__(self, url: str, **options: Any) -> None:
        super().__init__(url, **options)
        self._keyed_deliveries = False  # whether the last delivery held a keyed operation

    async def enable_outbox(self) -> None:
        async def enable(conn: Conn) -> None:
            await conn.execute(SQL["migration_lock"])
            [row] = await _fetch(conn, "outbox_enabled")
            if row["enabled"]:
                return
            await conn.execute(OUTBOX_SQL["outbox_enable_insert"])
            await conn.execute(OUTBOX_SQL["outbox_enable_update"])
            await conn.execute(OUTBOX_SQL["outbox_backfill"])

        await self._tx(enable)

    async def claim_outbox(self, limit: int, lease_s: float) -> list[OutboxEntry]:
        if limit <= 0:
            return []

        async def claim(conn: Conn) -> list[OutboxEntry]:
            entries = []
            for row in await _fetch(conn, "outbox_claim", {"limit": limit, "lease_s": lease_s}):
                payload: dict[str, Any] = {}
                if row["kind"] == "dead" and row["found"]:
                    payload = {"job_id": row["job_id"], "task": row["task"],
                               "args": rows._json(row["args"], {}),
                               "attempts": int(row["attempts"]),
                               "error": rows._json(row["error"], None)}
                entries.append(OutboxEntry(int(row["id"]), row["op_id"], row["queue"],
                                           row["key"], row["kind"],
                                           rows._json(row["headers"], {}), payload))
            return entries

        return await self._read(claim)  # one statement: no transaction block

    async def mark_published(self, ids: Sequence[int]) -> None:
        if ids:
            await self._read(partial(_fetch, name="outbox_published",
                                     params={"ids": list(ids)}))

    async def compact_outbox(self) -> None:
        async def vacuum(conn: Conn) -> None:
            # Not prepared: VACUUM is a utility statement, and it must run outside a
            # transaction block (the pool's connections are in autocommit).
            await conn.execute(OUTBOX_SQL["outbox_compact"], prepare=False)

        await self._read(vacuum)

    async def outbox_backlog(self) -> dict[str, int]:
        async def read(conn: Conn) -> dict[str, int]:
            return {r["queue"]: int(r["due"]) for r in await _fetch(conn, "outbox_backlog")}

        return await self._read(read)

    async def next_outbox_due_s(self) -> float | None:
        async def read(conn: Conn) -> float | None:
            [row] = await _fetch(conn, "outbox_next_due")
            return None if row["wait_s"] is None else max(0.0, float(row["wait_s"]))

        return await self._read(read)

    async def claim_delivered(self, op_ids: Sequence[str], worker_id: str, lease_s: float,
                              park_s: float) -> Delivered:
        """Operations without a key are leased in one statement (``claim_delivered_free``);
        a delivery with a keyed one in the two of the key lock. The store remembers which
        the last delivery needed and tries that first."""
        if not op_ids:
            return Delivered([], [])
        params = {"ids": sorted(set(op_ids)), "worker_id": worker_id, "lease_s": lease_s,
                  "park_s": park_s}
        if not self._keyed_deliveries:
            # One statement, so no transaction block (_read: autocommit).
            found = await self._read(partial(_fetch, name="claim_delivered_free",
                                             params=params))
            if not found[0]["keyed"]:
                return Delivered(rows.claims_in_order(r for r in found if r["id"] is not None),
                                 [str(i) for i in found[0]["parked"]])
        delivered, keyed = await self._tx(partial(_claim_delivered_keyed, params=params))
        self._keyed_deliveries = keyed
        return delivered

    async def reconcile_outbox(self, queue: str, older_than_s: float, limit: int) -> list[str]:
        async def reconcile(conn: Conn) -> list[str]:
            return [str(r["op_id"]) for r in await _fetch(conn, "outbox_reconcile", {
                "queue": queue, "older_than_s": older_than_s, "limit": limit})]

        return await self._tx(reconcile)


async def _claim_delivered_keyed(conn: Conn, params: dict[str, Any]) -> tuple[Delivered, bool]:
    """Lease delivered operations with the key lock: the leases and parked ids, and
    whether any delivered operation that was leased or parked has a key."""
    candidates = await _fetch(conn, "delivered_candidates", params)
    found = []
    if candidates:
        found = await fetch(conn, "claim_update", {**params,
                                                   "seqs": [c["seq"] for c in candidates]})
    claimed = {str(r["id"]) for r in found}
    rest = [i for i in params["ids"] if i not in claimed]
    parked = [str(r["op_id"]) for r in await _fetch(
        conn, "delivered_park", {**params, "ids": rest})] if rest else []
    if found:
        await conn.execute(SQL["mark_jobs_running"],
                           {"ids": sorted({str(r["job_id"]) for r in found})})
    return Delivered(rows.claims_in_order(found), parked), bool(parked) or any(
        r["key"] is not None for r in found)
