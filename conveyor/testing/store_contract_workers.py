"""Store conformance, part 4: the worker registry. Registration and heartbeats, listing
live and gone workers, and expiry that hands a silent worker's leases to the rescuer.

Run through :class:`conveyor.testing.store_contract.StoreContract`.
"""

from __future__ import annotations

import asyncio
import dataclasses

from ..model import OpStatus, WorkerInfo
from ..store.base import Store
from .contract_support import LONG_LEASE_S, TIME_TOLERANCE_S, insert, job, op, operation


def worker(worker_id: str, **changes: object) -> WorkerInfo:
    base = WorkerInfo(id=worker_id, host="host-a", pid=4242, queues=("default", "q"),
                      concurrency=8, version="1.2.3", config_hash="cafe", started_at=1000.0)
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


class StoreWorkerCases:
    """Needs a ``store`` fixture: an opened, migrated, empty store."""

    async def test_workers_register_and_heartbeat(self, store: Store) -> None:
        """Every field round-trips; ``last_seen_at`` comes from the store's clock and moves
        forward with each heartbeat, which also refreshes the counters."""
        before = await store.now()
        await store.upsert_workers([worker("w-1"), worker("w-2", host="host-b")])
        first = {w.id: w for w in await store.list_workers()}
        assert set(first) == {"w-1", "w-2"}
        w1 = first["w-1"]
        assert (w1.host, w1.pid, w1.queues, w1.concurrency, w1.version, w1.config_hash) == (
            "host-a", 4242, ("default", "q"), 8, "1.2.3", "cafe")
        assert w1.started_at == 1000.0 and w1.status == "live"
        assert w1.last_seen_at >= before - TIME_TOLERANCE_S
        await asyncio.sleep(0.05)
        await store.upsert_workers([worker("w-1", in_flight=3, processed=99)])
        [again] = [w for w in await store.list_workers() if w.id == "w-1"]
        assert (again.in_flight, again.processed) == (3, 99)
        assert again.last_seen_at > w1.last_seen_at

    async def test_gone_workers_are_listed_only_on_request(self, store: Store) -> None:
        await store.upsert_workers([worker("w-live"), worker("w-gone", status="gone")])
        assert [w.id for w in await store.list_workers()] == ["w-live"]
        listed = await store.list_workers(include_gone=True)
        assert [(w.id, w.status) for w in listed] == [("w-gone", "gone"), ("w-live", "live")]

    async def test_silent_worker_expires_and_its_leases_are_rescued(self, store: Store) -> None:
        """A worker not seen for the timeout is marked gone once (even with concurrent
        expirers), and its long leases become rescuable at once; others are untouched."""
        await insert(store, job(op("t.a")), job(op("t.b")))
        await store.upsert_workers([worker("w-silent")])
        [silent_claim] = await store.claim(["default"], "w-silent", 1, LONG_LEASE_S)
        await asyncio.sleep(0.4)
        await store.upsert_workers([worker("w-alive")])
        [alive_claim] = await store.claim(["default"], "w-alive", 1, LONG_LEASE_S)
        results = await asyncio.gather(*(store.expire_workers(0.3, 3600.0) for _ in range(4)))
        assert sorted(w for found in results for w in found) == ["w-silent"], results
        assert [w.id for w in await store.list_workers()] == ["w-alive"]
        assert await store.rescue_expired(100) == [silent_claim.op_id]
        assert (await operation(store, silent_claim.op_id)).status is OpStatus.QUEUED
        assert (await operation(store, alive_claim.op_id)).status is OpStatus.RUNNING

    async def test_long_gone_workers_are_forgotten(self, store: Store) -> None:
        """Gone workers not seen for ``forget_after_s`` are deleted; gone workers seen
        since, and live ones however silent, stay (a live one is marked gone first)."""
        await store.upsert_workers([worker("w-old", status="gone"), worker("w-silent")])
        await asyncio.sleep(0.4)
        await store.upsert_workers([worker("w-recent", status="gone")])
        assert await store.expire_workers(60.0, 0.3) == []
        listed = await store.list_workers(include_gone=True)
        assert [(w.id, w.status) for w in listed] == [("w-recent", "gone"), ("w-silent", "live")]
        await store.upsert_workers([worker("w-old")])  # a forgotten worker comes back
        assert "w-old" in {w.id for w in await store.list_workers()}
