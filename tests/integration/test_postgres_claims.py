"""PostgreSQL claims under real concurrency: many claimers on separate connection pools.

Per-key order must hold and nothing may be claimed twice while submissions keep arriving
(also from two group-committing stores at once), which is where a check made on a stale
snapshot would let two operations of one key run together.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections import defaultdict

import psycopg
import pytest

from conveyor.model import (
    ErrorInfo,
    JobStatus,
    Lease,
    NewJob,
    OpFilter,
    OpStatus,
    Outcome,
    OutcomeKind,
)
from conveyor.store.base import Delivered
from conveyor.store.postgres import PostgresStore
from conveyor.testing.contract_support import eventually, job, op
from conveyor.transport.store import StoreTransport
from tests.support.pg_fixtures import pg_database, pg_store, pg_url

__all__ = ["pg_database", "pg_store", "pg_url"]

KEYS = 40
OPS_PER_KEY = 30
CLAIMERS = 8


@pytest.mark.parametrize("free_per_round", [0, 20], ids=["keyed", "keyed-and-free"])
async def test_many_claimers_keep_per_key_order_and_claim_once(
    pg_store: PostgresStore, pg_url: str, free_per_round: int
) -> None:
    """8 claimers (each its own pool) and 2 submitters (each its own group-committing
    store) work at once: no key ever has two operations leased together, every operation
    is claimed exactly once, and each key's operations ran in submission order (by the
    database's own timestamps). With operations without a key among them, claims switch
    between the one-statement head and the key-locked path as the head changes."""
    stores = [PostgresStore(pg_url, max_size=2) for _ in range(CLAIMERS + 2)]
    for s in stores:
        await s.open()
    submitters, claimers = stores[:2], stores[2:]
    # Half the work is there before claiming starts; the rest arrives meanwhile. Each
    # key is submitted by one submitter, in order, so seq order is submission order.
    expected = (KEYS + 2 * free_per_round) * OPS_PER_KEY
    held: dict[str, str] = {}
    claimed: list[str] = []
    violations: list[str] = []
    done = asyncio.Event()

    async def submit(store: PostgresStore, keys: list[str], rounds: range) -> None:
        for r in rounds:
            batch = [job(op("t.k", key=k, args={"n": r})) for k in keys]
            batch += [job(op("t.free", args={"n": r})) for _ in range(free_per_round)]
            random.shuffle(batch)  # one operation per key a round: its order stays
            for i in range(0, len(batch), 7):
                await store.insert_jobs(batch[i:i + 7])

    async def claim_loop(store: PostgresStore, name: str) -> None:
        while not done.is_set():
            claims = await store.claim(["default"], name, random.randint(1, 8), 30.0)
            if not claims:
                await asyncio.sleep(0.002)
                continue
            for c in claims:
                claimed.append(c.op_id)
                if c.key is None:
                    continue
                if c.key in held:
                    violations.append(f"{c.key}: {c.op_id} while {held[c.key]} is held")
                held[c.key] = c.op_id
            await asyncio.sleep(random.uniform(0, 0.003))
            for c in claims:  # let go before the outcome commits: a strict check
                held.pop(c.key or "", None)
            accepted = await store.complete_many(
                [Outcome(c.op_id, c.lease_token, OutcomeKind.SUCCEEDED, result=None)
                 for c in claims])
            assert all(accepted)
            if len(claimed) >= expected:
                done.set()

    keys = [f"k{i}" for i in range(KEYS)]
    half = OPS_PER_KEY // 2
    await asyncio.gather(submit(submitters[0], keys[::2], range(half)),
                         submit(submitters[1], keys[1::2], range(half)))
    started = time.monotonic()
    try:
        await asyncio.wait_for(asyncio.gather(
            submit(submitters[0], keys[::2], range(half, OPS_PER_KEY)),
            submit(submitters[1], keys[1::2], range(half, OPS_PER_KEY)),
            *(claim_loop(s, f"claimer-{i}") for i, s in enumerate(claimers)),
        ), timeout=120)
    finally:
        elapsed_s = time.monotonic() - started
        for s in stores:
            await s.close()

    assert violations == []
    assert len(claimed) == expected and len(set(claimed)) == expected
    ops = await pg_store.list_operations(OpFilter(limit=100_000))
    assert len(ops) == expected
    assert all(o.status is OpStatus.SUCCEEDED and o.attempts == 1 for o in ops)
    by_key: dict[str, list] = defaultdict(list)
    for o in sorted(ops, key=lambda o: o.seq):
        if o.key is not None:
            by_key[o.key].append(o)
    assert len(by_key) == KEYS
    for key, in_order in by_key.items():
        assert [o.args["n"] for o in in_order] == list(range(OPS_PER_KEY)), key
        for earlier, later in itertools.pairwise(in_order):
            assert earlier.finished_at is not None and later.started_at is not None
            assert earlier.finished_at <= later.started_at, (key, earlier.id, later.id)
    print(f"\n{expected} operations, {CLAIMERS} claimers: {expected / elapsed_s:.0f} ops/s")


async def test_replay_racing_claims_never_runs_a_key_twice(pg_store: PostgresStore,
                                                            pg_url: str) -> None:
    """A dead operation replayed while later operations of its key are being claimed:
    at most one operation of the key is ever leased."""
    other = PostgresStore(pg_url, max_size=4)
    await other.open()
    try:
        for round_ in range(60):
            key = f"r{round_}"
            first, second = job(op("t.a", key=key, max_attempts=1)), job(op("t.b", key=key))
            await pg_store.insert_jobs([first, second])
            [a] = await pg_store.claim(["default"], "w", 1, 30.0)
            await pg_store.complete_many([Outcome(a.op_id, a.lease_token, OutcomeKind.DEAD)])
            results = await asyncio.gather(
                other.replay(OpFilter(ids=(a.op_id,))),
                pg_store.claim(["default"], "w1", 5, 30.0),
                other.claim(["default"], "w2", 5, 30.0),
            )
            running = [c for got in results[1:] for c in got]  # type: ignore[union-attr]
            assert len(running) <= 1, running
            # Drain the key: one operation at a time, both of them exactly once.
            finished = []
            while len(finished) < 2:
                await pg_store.complete_many([Outcome(c.op_id, c.lease_token,
                                                      OutcomeKind.SUCCEEDED) for c in running])
                finished.extend(c.op_id for c in running)
                if len(finished) == 2:
                    break
                running = await eventually(lambda: pg_store.claim(["default"], "w3", 5, 30.0),
                                           what="the key's next operation")
                assert len(running) == 1, running
            assert sorted(finished) == sorted(o.id for o in await pg_store.list_operations(
                OpFilter(job_id=first.id)) + await pg_store.list_operations(
                OpFilter(job_id=second.id)))
    finally:
        await other.close()


async def test_outcomes_end_every_job_and_notify_what_may_be_ready(
    pg_store: PostgresStore, pg_url: str
) -> None:
    """Outcome batches go from the one-statement record (jobs of one operation) to the
    transaction that derives a larger job's status and back: each job ends as its
    operations did, and exactly the batches with a keyed end or a retry notify the queue
    (at commit, once per transaction)."""
    one, keyed, retried = job(op("t.one")), job(op("t.keyed", key="k")), job(op("t.retried"))
    pair = job(op("t.first"), op("t.second"))
    await pg_store.insert_jobs([one, pair, keyed, retried])
    claims = {c.task: c for c in await pg_store.claim(["default"], "w", 10, 30.0)}
    assert sorted(claims) == ["t.first", "t.keyed", "t.one", "t.retried", "t.second"]

    async def status(j: NewJob) -> JobStatus:
        [found] = await pg_store.get_jobs([j.id])
        return found.status

    async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as listener:
        await listener.execute("LISTEN conveyor_ready")
        assert await pg_store.complete_many([Outcome.succeeded(claims["t.one"], 1)]) == [True]
        assert await status(one) is JobStatus.SUCCEEDED
        assert await pg_store.complete_many([Outcome.succeeded(claims["t.first"], 2),
                                             Outcome.succeeded(claims["t.keyed"], 3)]) == [
            True, True]
        assert (await status(pair), await status(keyed)) == (JobStatus.RUNNING,
                                                              JobStatus.SUCCEEDED)
        assert await pg_store.complete_many([Outcome.retry(
            claims["t.retried"], ErrorInfo("E", "again"), 60.0)]) == [True]
        assert await status(retried) is JobStatus.RUNNING
        assert await pg_store.complete_many([Outcome.succeeded(claims["t.second"], 4),
                                             Outcome.succeeded(claims["t.one"], 5)]) == [
            True, False]  # the second lease of t.one was recorded already
        assert await status(pair) is JobStatus.SUCCEEDED
        payloads = [n.payload async for n in listener.notifies(timeout=1.0)]
    assert payloads == ["default", "default"]  # the keyed end, then the retry
    [first, second] = await pg_store.list_operations(OpFilter(job_id=pair.id))
    assert (first.result, second.result) == (2, 4)


async def test_deliveries_lease_free_work_in_one_statement_and_keyed_with_the_lock(
    pg_store: PostgresStore, pg_url: str
) -> None:
    """The Kafka tier's leases of delivered operations: without keys, one statement
    leases what is waiting and parks what another claimer holds; a delivery with a keyed
    operation is leased with the key lock (its successor parked), and the next free one
    goes back to one statement."""
    store = pg_store
    await store.enable_outbox()
    free, held = job(op("t.free")), job(op("t.held"))
    first, second = job(op("t.first", key="k")), job(op("t.second", key="k"))
    await store.insert_jobs([free, held, first, second])
    ids = {o.task: o.id for o in await store.list_operations(OpFilter(limit=10))}
    async with await psycopg.AsyncConnection.connect(pg_url) as other:  # another claimer
        await other.execute("SELECT 1 FROM operations WHERE id = %s FOR UPDATE",
                            (ids["t.held"],))
        got = await store.claim_delivered([ids["t.free"], ids["t.held"]], "w1", 30.0, 60.0)
        await other.rollback()
    assert [c.task for c in got.claims] == ["t.free"]
    assert got.parked == [ids["t.held"]]
    [(free_status,)] = [(j.status,) for j in await store.get_jobs([free.id])]
    assert free_status is JobStatus.RUNNING

    keyed = await store.claim_delivered([ids["t.first"], ids["t.second"]], "w1", 30.0, 60.0)
    assert [c.task for c in keyed.claims] == ["t.first"]
    assert keyed.parked == [ids["t.second"]]
    # The store remembers the key: the next delivery takes the key lock too, finds none
    # (t.free is stale now, t.held free), and the one after is one statement again.
    again = await store.claim_delivered([ids["t.free"], ids["t.held"]], "w2", 30.0, 60.0)
    assert ([c.task for c in again.claims], again.parked) == (["t.held"], [])
    assert await store.claim_delivered([ids["t.free"]], "w2", 30.0, 60.0) == Delivered([], [])


async def test_notify_wakes_an_idle_worker_in_milliseconds(pg_store: PostgresStore,
                                                           pg_url: str) -> None:
    """A worker waiting with a 5 s poll gets work inserted by another process's store
    within well under a second: LISTEN/NOTIFY, not the poll, ended the wait."""
    submitter = PostgresStore(pg_url)
    await submitter.open()
    transport = StoreTransport(pg_store, poll_s=5.0)
    await transport.start(["default"], "w1")
    try:
        assert await transport.receive(1, 30.0, 0.3) == []  # the listener is up now
        latencies_s = []
        for _ in range(5):
            waiting = asyncio.create_task(transport.receive(1, 30.0, 10.0))
            await asyncio.sleep(0.2)
            started = time.monotonic()
            await submitter.insert_jobs([job(op("t.fast"))])
            [claim] = await waiting
            latencies_s.append(time.monotonic() - started)
            await pg_store.complete_many([Outcome(claim.op_id, claim.lease_token,
                                                  OutcomeKind.SUCCEEDED)])
        assert max(latencies_s) < 1.0, latencies_s
        print(f"\nwake-up latency: {[round(x * 1000, 1) for x in latencies_s]} ms")
    finally:
        await transport.close()
        await submitter.close()


@pytest.mark.parametrize("batch", [1000, 5000])
async def test_batch_insert_is_one_transaction(pg_store: PostgresStore, batch: int) -> None:
    """Thousands of jobs in one call land together (one statement per table)."""
    jobs = [job(op("t.bulk", key=f"k{i % 50}")) for i in range(batch)]
    started = time.monotonic()
    answers = await pg_store.insert_jobs(jobs)
    elapsed_s = time.monotonic() - started
    assert [a.job_id for a in answers] == [j.id for j in jobs]
    ops = await pg_store.list_operations(OpFilter(limit=batch + 1))
    assert len(ops) == batch
    assert [o.job_id for o in ops] == [j.id for j in jobs]  # seq follows input order
    print(f"\n{batch} jobs in one insert_jobs: {elapsed_s * 1000:.0f} ms "
          f"({batch / elapsed_s:.0f} jobs/s)")


async def test_leases_follow_the_database_clock_not_the_workers(
    pg_store: PostgresStore, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker whose clock is an hour off (either way) neither sees live leases as expired
    nor loses its own: every lease time is computed by the database."""
    await pg_store.insert_jobs([job(op("t.a")), job(op("t.b")), job(op("t.c"))])
    [mine] = await pg_store.claim(["default"], "w-ok", 1, 30.0)
    real_time = time.time
    for skew_s in (3600.0, -3600.0):
        monkeypatch.setattr(time, "time", lambda skew_s=skew_s: real_time() + skew_s)
        skewed = PostgresStore(pg_url)
        await skewed.open()
        try:
            assert await skewed.rescue_expired(100) == []  # my lease is live
            db_now = await skewed.now()
            assert abs(db_now - real_time()) < 5.0  # the database's time, not ours
            [theirs] = await skewed.claim(["default"], f"w-skewed{skew_s:+.0f}", 1, 30.0)
            [running] = await skewed.list_operations(OpFilter(ids=(theirs.op_id,)))
            assert running.started_at is not None
            assert abs(running.started_at - db_now) < 5.0
            [state] = await skewed.extend_leases([Lease(theirs.op_id, theirs.lease_token)],
                                                 30.0)
            assert state.held
            assert await pg_store.rescue_expired(100) == []  # nor do others see it expired
        finally:
            await skewed.close()
    monkeypatch.setattr(time, "time", real_time)
    [state] = await pg_store.extend_leases([Lease(mine.op_id, mine.lease_token)], 30.0)
    assert state.held and await pg_store.rescue_expired(100) == []


async def test_concurrent_rescuers_rescue_each_lease_once(pg_store: PostgresStore,
                                                          pg_url: str) -> None:
    """Four processes' rescuers at once over 200 expired leases: each is re-queued exactly
    once (one attempt spent), none twice."""
    await pg_store.insert_jobs([job(op("t.x")) for _ in range(200)])
    claims = await pg_store.claim(["default"], "w-dead", 200, 0.2)
    assert len(claims) == 200
    rescuers = [PostgresStore(pg_url, max_size=2) for _ in range(4)]
    for r in rescuers:
        await r.open()
    try:
        await asyncio.sleep(0.4)
        rescued: list[str] = []
        while len(rescued) < 200:
            found = await asyncio.gather(*(r.rescue_expired(30) for r in rescuers))
            rescued.extend(op_id for batch in found for op_id in batch)
            if not any(found):
                break
    finally:
        for r in rescuers:
            await r.close()
    assert sorted(rescued) == sorted(c.op_id for c in claims)
    ops = await pg_store.list_operations(OpFilter(limit=1000))
    assert all(o.status is OpStatus.QUEUED and o.attempts == 1 for o in ops)
