"""A worker claims up to ``claim_ahead`` operations beyond its free slots. They wait in
claim order and never push the running attempts past ``concurrency``; their leases are
renewed; a cancelled one is recorded without running, one whose lease was lost runs once,
under its new lease; on stop they are released unstarted. While outcomes wait to be
recorded, a worker on SQLite holds at most ``3 * concurrency + claim_ahead`` leases.
Real SQLite store, a worker in this process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import conveyor
from conveyor.config import Config
from conveyor.model import JobStatus, Lease, NewJob, NewOperation, OpFilter, OpStatus, Outcome
from conveyor.store.sqlite import SQLiteStore
from conveyor.tasks import Registry, spec_of
from conveyor.transport.store import StoreTransport
from conveyor.worker.runner import Worker


class Gate:
    """What the ``test.gate`` task saw: which calls started, how many ran at once."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.started: list[int] = []
        self.running = 0
        self.most_running = 0


GATE = Gate()


@conveyor.task(name="test.gate")
async def gate(n: int) -> int:
    GATE.started.append(n)
    GATE.running += 1
    GATE.most_running = max(GATE.most_running, GATE.running)
    try:
        await GATE.open.wait()
    finally:
        GATE.running -= 1
    return n


def _job(n: int) -> NewJob:
    return NewJob(operations=(NewOperation(task="test.gate", args={"n": n}),))


async def _until(check: Callable[[], Awaitable[bool]], timeout_s: float = 10.0) -> None:
    async def poll() -> None:
        while not await check():
            await asyncio.sleep(0.01)
    await asyncio.wait_for(poll(), timeout_s)


class _HeldOutcomes(SQLiteStore):
    """Records outcomes only once ``record`` is set: a store slow to write them."""

    record = asyncio.Event()

    async def complete_many(self, outcomes: Sequence[Outcome]) -> list[bool]:
        await self.record.wait()
        return await super().complete_many(outcomes)


@asynccontextmanager
async def _worker(tmp_path: Path, jobs: list[NewJob], store_type: type[SQLiteStore] = SQLiteStore,
                  **config: object
                  ) -> AsyncIterator[tuple[SQLiteStore, Worker, asyncio.Task[None]]]:
    global GATE
    GATE = Gate()
    path = tmp_path / "ahead.db"
    store = store_type(path)
    await store.migrate()
    await store.open()
    await store.insert_jobs(jobs)
    spec = spec_of(gate)
    assert spec is not None
    registry = Registry.load()
    registry.add(spec)
    worker = Worker(Config(store=f"sqlite:///{path}", poll_s=0.05).replace(**config),
                    store, StoreTransport(store, poll_s=0.05), registry)
    running = asyncio.create_task(worker.run())
    try:
        yield store, worker, running
    finally:
        GATE.open.set()
        worker.request_stop()
        await asyncio.gather(running, return_exceptions=True)
        await store.close()


async def _statuses(store: SQLiteStore, jobs: list[NewJob]) -> list[OpStatus]:
    ops = {o.job_id: o.status for o in await store.list_operations(OpFilter(limit=100))}
    return [ops[j.id] for j in jobs]


async def test_claimed_ahead_operations_wait_in_order_within_concurrency(
    tmp_path: Path,
) -> None:
    jobs = [_job(n) for n in range(8)]
    async with _worker(tmp_path, jobs, concurrency=2, claim_ahead=3) as (store, worker, _):
        await _until(lambda: _true(len(GATE.started) == 2))
        # Two run, three more are leased and wait; the other three are still queued.
        await _until(lambda: _has(store, jobs, OpStatus.RUNNING, 5))
        assert worker.counters.started == 2
        assert (await _statuses(store, jobs))[5:] == [OpStatus.QUEUED] * 3
        GATE.open.set()
        await _until(lambda: _has(store, jobs, OpStatus.SUCCEEDED, 8))
    assert GATE.started == list(range(8))
    assert GATE.most_running == 2


async def test_leases_held_while_outcomes_wait_are_bounded(tmp_path: Path) -> None:
    """One batch of outcomes being written and the next waiting for it do not stop the
    claim of a third batch; a fourth waits until they are recorded."""
    jobs = [_job(n) for n in range(12)]
    _HeldOutcomes.record = asyncio.Event()
    async with _worker(tmp_path, jobs, _HeldOutcomes, concurrency=2) as (store, _, _):
        GATE.open.set()
        try:
            await _until(lambda: _true(len(GATE.started) == 6))
            await asyncio.sleep(0.3)  # several poll intervals: no further claim may happen
            assert len(GATE.started) == 6 and GATE.most_running <= 2
            assert await _has(store, jobs, OpStatus.RUNNING, 6)  # 3 x concurrency leases
            assert await _has(store, jobs, OpStatus.QUEUED, 6)
        finally:
            _HeldOutcomes.record.set()  # else stopping would wait for them forever
        await _until(lambda: _has(store, jobs, OpStatus.SUCCEEDED, 12))
    assert GATE.started == list(range(12))


async def test_a_waiting_operation_cancelled_is_recorded_without_running(
    tmp_path: Path,
) -> None:
    jobs = [_job(0), _job(1)]
    async with _worker(tmp_path, jobs, concurrency=1, claim_ahead=1,
                       lease_s=0.6) as (store, worker, _):
        await _until(lambda: _has(store, jobs, OpStatus.RUNNING, 2))
        assert await store.cancel_jobs([jobs[1].id]) == [jobs[1].id]
        # Settled by the next heartbeat (every 0.2 s) while the first still runs.
        await _until(lambda: _job_is(store, jobs[1], JobStatus.CANCELLED))
        assert GATE.started == [0]
        await asyncio.sleep(0.5)  # later heartbeats leave the settled operation alone
        GATE.open.set()
        await _until(lambda: _job_is(store, jobs[0], JobStatus.SUCCEEDED))
        assert (worker.counters.cancelled, worker.counters.fenced_out) == (1, 0)
    assert GATE.started == [0]


async def test_a_waiting_operation_whose_lease_was_lost_runs_once(tmp_path: Path) -> None:
    jobs = [_job(0), _job(1)]
    async with _worker(tmp_path, jobs, concurrency=1, claim_ahead=1,
                       lease_s=0.6) as (store, worker, _):
        await _until(lambda: _has(store, jobs, OpStatus.RUNNING, 2))
        [waiting] = [e.claim for e in worker._inflight.values() if e.claim.job_id == jobs[1].id]
        assert await store.release([Lease(waiting.op_id, waiting.lease_token)]) == 1
        # The heartbeat finds the lease gone; the worker claims the operation again.
        await _until(lambda: _claimed_again(worker, waiting.op_id, waiting.lease_token))
        GATE.open.set()
        await _until(lambda: _has(store, jobs, OpStatus.SUCCEEDED, 2))
    assert sorted(GATE.started) == [0, 1]
    assert worker.counters.fenced_out == 0


async def test_on_stop_waiting_operations_are_released_unstarted(tmp_path: Path) -> None:
    jobs = [_job(n) for n in range(4)]
    async with _worker(tmp_path, jobs, concurrency=1, claim_ahead=3) as (store, worker,
                                                                         running):
        await _until(lambda: _has(store, jobs, OpStatus.RUNNING, 4))
        worker.request_stop()
        # Released while the running attempt is still held at the gate.
        await _until(lambda: _has(store, jobs, OpStatus.QUEUED, 3))
        assert not running.done()
        assert GATE.started == [0]
        GATE.open.set()
        await asyncio.wait_for(running, 10)
        assert await _statuses(store, jobs) == [OpStatus.SUCCEEDED] + [OpStatus.QUEUED] * 3
    assert GATE.started == [0]


async def _true(value: bool) -> bool:
    return value


async def _has(store: SQLiteStore, jobs: list[NewJob], status: OpStatus, n: int) -> bool:
    return (await _statuses(store, jobs)).count(status) == n


async def _job_is(store: SQLiteStore, job: NewJob, status: JobStatus) -> bool:
    [found] = await store.get_jobs([job.id])
    return found.status is status


async def _claimed_again(worker: Worker, op_id: str, old_token: int) -> bool:
    entry = worker._inflight.get(op_id)
    return entry is not None and entry.claim.lease_token != old_token
