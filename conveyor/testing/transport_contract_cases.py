"""Transport conformance cases; run through
:class:`conveyor.testing.transport_contract.TransportContract`.

Every transport hands out claims leased in the store, so these cases check delivery
(which operations, how many, when) and lean on the store for the rest: an operation is
delivered again only after its lease expired and the rescuer re-queued it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Collection

import pytest

from ..model import Claim, Lease, OpStatus, Outcome
from ..store.base import Store
from ..transport.base import Transport
from .contract_support import (
    LONG_LEASE_S,
    SHORT_LEASE_S,
    WAIT_S,
    insert,
    job,
    op,
    operation,
    rescue_until,
)

Connect = Callable[..., Awaitable[Transport]]
"""``await connect(queues=("default",), worker_id="w1")``: a started transport."""


async def receive_until(
    transport: Transport, count: int, *, max_n: int = 100, lease_s: float = LONG_LEASE_S,
    timeout_s: float = WAIT_S,
) -> list[Claim]:
    """Receive until ``count`` claims arrived (a log-based transport may need a moment)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    got: list[Claim] = []
    while len(got) < count and loop.time() < deadline:
        got.extend(await transport.receive(max_n, lease_s, 0.1))
    return got


class TransportCases:
    """Needs fixtures ``store`` (opened, migrated, empty) and ``transport_factory`` (a
    callable building an unstarted transport on that store)."""

    @pytest.fixture
    async def connect(
        self, store: Store, transport_factory: Callable[[Store], Transport]
    ) -> AsyncIterator[Connect]:
        opened: list[Transport] = []

        async def connect(queues: Collection[str] = ("default",),
                          worker_id: str = "w1") -> Transport:
            transport = transport_factory(store)
            await transport.start(list(queues), worker_id)
            opened.append(transport)
            return transport

        yield connect
        for transport in reversed(opened):
            await transport.close()

    async def test_receive_returns_leased_claims_of_started_queues(
        self, store: Store, connect: Connect
    ) -> None:
        """Claims come only from the queues the transport was started with, and each is a
        lease held in the store by this worker."""
        await insert(store, job("t.a1", "t.a2", queue="a"), job("t.b", queue="b"))
        transport = await connect(["a"], "worker-a")
        claims = await receive_until(transport, 2)
        assert sorted(c.task for c in claims) == ["t.a1", "t.a2"]
        for claim in claims:
            stored = await operation(store, claim.op_id)
            assert (stored.status, stored.worker_id) == (OpStatus.RUNNING, "worker-a")
        states = await store.extend_leases(
            [Lease(c.op_id, c.lease_token) for c in claims], LONG_LEASE_S)
        assert all(s.held for s in states)
        assert await transport.receive(10, LONG_LEASE_S, 0.2) == []

    async def test_receive_respects_max_n(self, store: Store, connect: Connect) -> None:
        """No call returns more than ``max_n`` claims; repeated calls deliver everything."""
        await insert(store, job(*[f"t.{i}" for i in range(5)]))
        transport = await connect()
        got: list[Claim] = []
        for _ in range(50):
            batch = await transport.receive(2, LONG_LEASE_S, 0.1)
            assert len(batch) <= 2
            got.extend(batch)
            if len(got) == 5:
                break
        assert sorted(c.task for c in got) == [f"t.{i}" for i in range(5)]

    async def test_receive_waits_wait_s_when_idle(self, store: Store, connect: Connect) -> None:
        """With nothing to deliver, ``receive`` returns ``[]`` after about ``wait_s``."""
        transport = await connect()
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await transport.receive(10, LONG_LEASE_S, 0.3) == []
        elapsed = loop.time() - started
        assert 0.25 <= elapsed < 2.0, elapsed

    async def test_wake_ends_a_wait_when_work_arrives(self, store: Store, connect: Connect) -> None:
        """Work submitted while a worker waits is received promptly after ``wake()``,
        long before the wait would have ended."""
        transport = await connect()
        waiting = asyncio.create_task(transport.receive(10, LONG_LEASE_S, 30.0))
        await asyncio.sleep(0.1)
        assert not waiting.done()
        [job_id] = await insert(store, job("t.now"))
        await transport.wake()
        claims = await asyncio.wait_for(waiting, 2.0)
        assert [c.job_id for c in claims] == [job_id]

    async def test_per_key_order_across_receives(self, store: Store, connect: Connect) -> None:
        """The second operation of a key is not delivered while the first is open, and is
        delivered once the first is complete and acked."""
        await insert(store, job(op("first", key="k")), job(op("second", key="k")))
        transport = await connect()
        [first] = await receive_until(transport, 1)
        assert first.task == "first"
        assert await transport.receive(10, LONG_LEASE_S, 0.2) == []
        assert await store.complete_many([Outcome.succeeded(first, None)]) == [True]
        await transport.ack([first])
        await transport.wake()
        [second] = await receive_until(transport, 1)
        assert second.task == "second"

    async def test_completed_and_acked_claims_are_not_redelivered(
        self, store: Store, connect: Connect
    ) -> None:
        """Once outcomes are recorded and acked, nothing comes back, even after the
        original leases would have expired."""
        await insert(store, job("t.a", "t.b", "t.c"))
        transport = await connect()
        claims = await receive_until(transport, 3, lease_s=SHORT_LEASE_S)
        assert len(claims) == 3
        assert await store.complete_many([Outcome.succeeded(c, None) for c in claims]) == [
            True] * 3
        await transport.ack(claims)
        assert await transport.receive(10, SHORT_LEASE_S, SHORT_LEASE_S * 2) == []
        assert await store.rescue_expired(100) == []
        assert await transport.receive(10, LONG_LEASE_S, 0.2) == []

    async def test_expired_claim_is_delivered_again(self, store: Store, connect: Connect) -> None:
        """At least once: a claim neither completed nor acked whose lease expired comes back
        after ``rescue_expired``, as the next attempt with a new token; the old holder's
        outcome is then refused."""
        [job_id] = await insert(store, job("t.a"))
        transport = await connect()
        [lost] = await receive_until(transport, 1, lease_s=SHORT_LEASE_S)
        await rescue_until(store, [lost.op_id])
        await transport.wake()
        [again] = await receive_until(transport, 1)
        assert (again.op_id, again.job_id, again.attempt) == (lost.op_id, job_id, 2)
        assert again.lease_token > lost.lease_token
        assert await store.complete_many([Outcome.succeeded(lost, None)]) == [False]
        assert await store.complete_many([Outcome.succeeded(again, None)]) == [True]
        await transport.ack([lost, again])

    async def test_two_workers_never_hold_one_operation(
        self, store: Store, connect: Connect
    ) -> None:
        """Two workers receiving at once never hold the same operation, nor two operations
        of one key, at the same time; together they receive everything exactly once."""
        ops = [op(f"t.k{i % 4}.{i}", key=f"k{i % 4}") for i in range(24)]
        ops += [op(f"t.free.{i}") for i in range(24)]
        await insert(store, *[job(*ops[i:i + 6]) for i in range(0, len(ops), 6)])
        workers = [await connect(worker_id="w1"), await connect(worker_id="w2")]
        delivered: list[str] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT_S
        while len(delivered) < len(ops) and loop.time() < deadline:
            batches = await asyncio.gather(
                *(w.receive(7, LONG_LEASE_S, 0.05) for w in workers))
            held = [c for batch in batches for c in batch]
            ids = [c.op_id for c in held]
            assert len(ids) == len(set(ids)), "one operation delivered to two workers"
            keys = [c.key for c in held if c.key is not None]
            assert len(keys) == len(set(keys)), "two operations of one key held at once"
            delivered.extend(ids)
            assert await store.complete_many([Outcome.succeeded(c, None) for c in held]) == [
                True] * len(held)
            for worker, batch in zip(workers, batches, strict=True):
                await worker.ack(batch)
                await worker.wake()
        assert len(delivered) == len(ops)
        assert len(set(delivered)) == len(ops)
