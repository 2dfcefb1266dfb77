"""Consumer-group semantics of the Kafka transport on a real broker: a backoff never
blocks a partition while per-key order holds through retries; a slow task does not get
its worker kicked out of the group; a partition handed over mid-flight is neither lost
nor recorded twice."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from conveyor.model import Claim, ErrorInfo, OpStatus, Outcome
from conveyor.store.postgres import PostgresStore
from conveyor.testing.contract_support import eventually, insert, job, op, operation
from tests.support.kafka import RelayedTransport, settings
from tests.support.pg_fixtures import outbox_store, pg_database, pg_store, pg_url

__all__ = ["outbox_store", "pg_database", "pg_store", "pg_url"]

Flow = tuple[int, bool]
"""A queue's messages buffered, and whether its partitions are paused."""


async def _receive(transport: RelayedTransport, want: set[str], timeout_s: float = 20.0,
                   ) -> dict[str, Claim]:
    got: dict[str, Claim] = {}
    deadline = time.monotonic() + timeout_s
    while not want <= set(got) and time.monotonic() < deadline:
        for claim in await transport.receive(100, 30.0, 0.1):
            got[claim.task] = claim
    return got


async def test_backoff_does_not_block_the_partition_and_key_order_holds(
        store: PostgresStore) -> None:
    transport = RelayedTransport(store, settings(partitions=1, park_s=0.2))
    await transport.start(["default"], "w1")
    try:
        await insert(store, job(op("a", key="k")), job(op("b", key="k")),
                     job(op("c", key="other")))
        first = await _receive(transport, {"a", "c"})
        assert set(first) == {"a", "c"}, "b waits for a (same key)"
        a = first["a"]
        assert await store.complete_many([
            Outcome.retry(a, ErrorInfo("E", "boom"), 2.0),
            Outcome.succeeded(first["c"], None)]) == [True, True]
        await transport.ack([a, first["c"]])

        # While a backs off, the partition moves on: d (another key, later) runs now.
        await insert(store, job(op("d", key="third")))
        later = await _receive(transport, {"d"})
        assert "b" not in later, "b must not overtake a's retry"
        assert set(later) == {"d"}
        assert (await operation(store, a.op_id)).status is OpStatus.RETRYING
        assert await store.complete_many([Outcome.succeeded(later["d"], None)]) == [True]
        await transport.ack(list(later.values()))

        retry = await _receive(transport, {"a"})
        assert set(retry) == {"a"} and retry["a"].attempt == 2
        assert await store.complete_many([Outcome.succeeded(retry["a"], None)]) == [True]
        await transport.ack([retry["a"]])
        last = await _receive(transport, {"b"})
        assert set(last) == {"b"}
        b_op = await operation(store, last["b"].op_id)
        a_op = await operation(store, a.op_id)
        assert a_op.finished_at is not None and b_op.started_at is not None
        assert a_op.finished_at <= b_op.started_at
    finally:
        await transport.close()


async def test_slow_task_keeps_its_partitions(store: PostgresStore) -> None:
    """No receive for longer than the session timeout and the poll interval: the
    consumer thread keeps the membership, the held work is acked afterwards."""
    kafka = settings(partitions=2, max_poll_interval_s=7.0)
    transport = RelayedTransport(store, kafka)
    await transport.start(["default"], "w1")
    try:
        await insert(store, job("slow"))
        [claim] = (await _receive(transport, {"slow"})).values()
        held = transport.inner.assigned()
        assert len(held) == 2
        await asyncio.sleep(kafka.max_poll_interval_s + 2.0)  # the "task" runs long
        assert transport.inner.assigned() == held
        assert await store.complete_many([Outcome.succeeded(claim, None)]) == [True]
        await transport.ack([claim])
        await insert(store, job("next"))
        assert set(await _receive(transport, {"next"})) == {"next"}
    finally:
        await transport.close()


@contextlib.asynccontextmanager
async def _loaded(store: PostgresStore, max_buffer: int, n: int,
                  ) -> AsyncIterator[tuple[RelayedTransport, Callable[[], Awaitable[Flow]]]]:
    """A transport with a ``max_buffer`` buffer over ``n`` submitted jobs (tasks
    ``t0``...), and a probe of its queue's (buffered, paused). On leaving, every job is
    received, recorded and acked, and must have been recorded exactly once, with the
    partitions fetching (not paused) at the end."""
    transport = RelayedTransport(store, settings(partitions=2, max_buffer=max_buffer))
    await transport.start(["default"], "w1")
    try:
        tasks = [f"t{i}" for i in range(n)]
        await insert(store, *[job(t) for t in tasks])
        topic = transport.inner.topics.topic("default")

        async def flow() -> Flow:
            return transport.inner.flow()[topic]

        yield transport, flow
        outcomes: dict[str, int] = {}
        deadline = time.monotonic() + 60
        while len(outcomes) < n and time.monotonic() < deadline:
            claims = await transport.receive(50, 30.0, 0.1)
            accepted = await store.complete_many([Outcome.succeeded(c, None) for c in claims])
            for claim, ok in zip(claims, accepted, strict=True):
                if ok:
                    outcomes[claim.task] = outcomes.get(claim.task, 0) + 1
            await transport.ack(claims)
        assert sorted(outcomes) == sorted(tasks)
        assert set(outcomes.values()) == {1}
        assert not (await flow())[1]
    finally:
        await transport.close()


async def test_a_full_buffer_stops_taking_without_pausing_its_partitions(
        store: PostgresStore) -> None:
    """A worker that takes nothing holds ``max_buffer`` messages, plus one per poll at
    most, and keeps its partitions fetching (a paused partition's fetch resumed up to a
    second late, which stalled drains); once it takes, every message arrives once."""
    async with _loaded(store, max_buffer=20, n=200) as (_, flow):
        await eventually(flow, lambda f: f[0] >= 20, timeout_s=30, what="a full buffer")
        await asyncio.sleep(1.0)  # full for ten polls
        buffered, paused = await flow()
        assert 20 <= buffered <= 20 + 12
        assert not paused


async def test_a_buffer_full_for_long_pauses_and_resumes_without_loss(
        store: PostgresStore) -> None:
    """Past twice ``max_buffer`` (one message per poll while full, for a while) the
    partitions pause; taking resumes them, and every message arrives once."""
    async with _loaded(store, max_buffer=5, n=100) as (_, flow):
        buffered, _ = await eventually(flow, lambda f: f[1], timeout_s=30, what="a pause")
        assert buffered >= 10


async def test_partitions_move_to_a_joining_worker_without_loss_or_double_outcome(
        store: PostgresStore) -> None:
    """A second worker joins while the first holds unfinished work: the revoked
    partitions' running operations are abandoned after ``drain_s`` (their leases stay
    fenced), the newcomer skips or parks what they block, and every operation ends with
    exactly one recorded outcome."""
    kafka = settings(partitions=4, drain_s=1.0, park_s=0.2)
    first = RelayedTransport(store, kafka)
    await first.start(["default"], "w1")
    second = RelayedTransport(store, kafka)
    outcomes: dict[str, int] = {}
    by_worker = {"w1": 0, "w2": 0}

    async def finish(transport: RelayedTransport, worker: str, claims: list[Claim]) -> None:
        accepted = await store.complete_many([Outcome.succeeded(c, None) for c in claims])
        for claim, ok in zip(claims, accepted, strict=True):
            if ok:
                outcomes[claim.task] = outcomes.get(claim.task, 0) + 1
                by_worker[worker] += 1
        await transport.ack(claims)

    try:
        tasks = [f"t{i}" for i in range(200)]
        await insert(store, *[job(op(t, key=f"k{i % 20}")) for i, t in enumerate(tasks)])
        deadline = time.monotonic() + 60
        while len(outcomes) < 40 and time.monotonic() < deadline:
            await finish(first, "w1", await first.receive(20, 30.0, 0.05))
        held = await first.receive(20, 30.0, 2.0)
        assert held, "the first worker holds unfinished work when the second joins"
        await second.start(["default"], "w2")
        while not second.inner.assigned() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert second.inner.assigned(), "the joining worker got partitions"
        await finish(first, "w1", held)
        while len(outcomes) < len(tasks) and time.monotonic() < deadline:
            batches = await asyncio.gather(first.receive(20, 30.0, 0.05),
                                           second.receive(20, 30.0, 0.05))
            await finish(first, "w1", batches[0])
            await finish(second, "w2", batches[1])
        assert sorted(outcomes) == sorted(tasks)
        assert set(outcomes.values()) == {1}
        assert by_worker["w2"] > 0
        for claim in held:
            assert (await operation(store, claim.op_id)).attempts == 1
    finally:
        await second.close()
        await first.close()
