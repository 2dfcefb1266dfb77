"""When a worker looks for work again: a finished keyed operation (its successor may now
be ready) wakes the worker at once; a finished unkeyed one makes nothing ready, so it
costs no claim; nor does a claim that took everything ready. Real SQLite store, a worker
in this process, polls far apart."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from conveyor.config import Config
from conveyor.model import Claim, JobStatus, NewJob, NewOperation
from conveyor.store.sqlite import SQLiteStore
from conveyor.tasks import Registry
from conveyor.transport.store import StoreTransport
from conveyor.worker.runner import Worker

POLL_S = 30.0  # longer than the test: every claim below follows a wake-up


class CountingStore(SQLiteStore):
    """The real store, counting the claims that found nothing."""

    empty_claims = 0

    async def claim(self, *args: Any, **kwargs: Any) -> list[Claim]:
        found = await super().claim(*args, **kwargs)
        if not found:
            self.empty_claims += 1
        return found


async def _finished(store: SQLiteStore, job_id: str) -> None:
    while True:
        [job] = await store.get_jobs([job_id])
        if job.status is JobStatus.SUCCEEDED:
            return
        await asyncio.sleep(0.01)


async def test_unkeyed_outcomes_cost_no_claim_and_keyed_ones_wake_the_next(
    tmp_path: Path,
) -> None:
    store = CountingStore(tmp_path / "wakeups.db")
    await store.migrate()
    await store.open()
    transport = StoreTransport(store, poll_s=POLL_S)
    worker = Worker(Config(store=f"sqlite:///{tmp_path / 'wakeups.db'}", poll_s=POLL_S),
                    store, transport, Registry.load())
    running = asyncio.create_task(worker.run())
    try:
        for _ in range(10):  # one at a time, each woken by its own submission
            job = NewJob(operations=(NewOperation(task="sys.noop", args={}),))
            await store.insert_jobs([job])
            await transport.wake()
            await asyncio.wait_for(_finished(store, job.id), 10)
        await asyncio.sleep(0.2)
        # At most the first claim, before anything was submitted, finds nothing: a claim
        # that took everything ready is not followed by another one until news arrives
        # (that one cost an empty claim per submission), and unkeyed outcomes wake no
        # claim (that cost another one each).
        assert store.empty_claims <= 1, store.empty_claims

        # Two operations of one key: the second is claimed as soon as the first finishes,
        # long before the next poll.
        first = NewOperation(task="sys.sleep", args={"seconds": 0.2}, key="k")
        second = NewOperation(task="sys.noop", args={}, key="k")
        keyed = NewJob(operations=(first, second))
        await store.insert_jobs([keyed])
        await transport.wake()
        await asyncio.wait_for(_finished(store, keyed.id), 5)
    finally:
        worker.request_stop()
        await asyncio.wait_for(running, 30)
        await store.close()
