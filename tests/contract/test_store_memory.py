"""The in-memory store passes the store conformance suite."""

from __future__ import annotations

from conveyor.model import OpFilter, OpStatus
from conveyor.store.memory import MemoryStore
from conveyor.testing.store_contract import StoreContract, claim_all, insert, job, op, store_fixture

store = store_fixture(lambda tmp_path: MemoryStore())


class TestMemoryStore(StoreContract):
    pass


async def test_injected_clock_drives_schedules_and_leases() -> None:
    """Memory-only: core unit tests move time with the clock instead of sleeping."""
    now = [1000.0]
    mem = MemoryStore(clock=lambda: now[0])
    await insert(mem, job(op("t.later", delay_s=10.0)))
    assert await claim_all(mem) == []
    now[0] += 10.0
    [claim] = await claim_all(mem, lease_s=5.0)
    now[0] += 5.0
    assert await mem.rescue_expired(10) == []  # expiry is exclusive: lease_expires < now
    now[0] += 0.001
    assert await mem.rescue_expired(10) == [claim.op_id]
    [back] = await mem.list_operations(OpFilter())
    assert (back.status, back.run_at) == (OpStatus.QUEUED, now[0])
