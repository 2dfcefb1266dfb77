"""A worker asked to stop finishes what it runs, records every outcome, and returns, also
when outcomes arrive while the previous batch is still being written. Real SQLite store,
a worker in this process."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from conveyor.config import Config
from conveyor.model import JobStatus, NewJob, NewOperation, Outcome
from conveyor.store.sqlite import SQLiteStore
from conveyor.tasks import Registry
from conveyor.transport.store import StoreTransport
from conveyor.worker.runner import Worker

FIRST_WRITE_S = 2.0  # the first batch of outcomes takes this long to record


class SlowOutcomes(SQLiteStore):
    """The real store, slow to record its first outcomes: everything else (the other
    operation's end, the stop, the worker's own shutdown steps) happens meanwhile."""

    batches: list[int]

    async def complete_many(self, outcomes: Sequence[Outcome]) -> list[bool]:
        self.batches.append(len(outcomes))
        if len(self.batches) == 1:
            await asyncio.sleep(FIRST_WRITE_S)
        return await super().complete_many(outcomes)


async def _started(store: SQLiteStore, job_ids: list[str]) -> None:
    while any(j.status is JobStatus.QUEUED for j in await store.get_jobs(job_ids)):
        await asyncio.sleep(0.01)


async def test_stop_while_an_outcome_batch_is_written_records_the_rest_and_returns(
    tmp_path: Path,
) -> None:
    path = tmp_path / "shutdown.db"
    store = SlowOutcomes(path)
    store.batches = []
    await store.migrate()
    await store.open()
    transport = StoreTransport(store, poll_s=0.05)
    worker = Worker(Config(store=f"sqlite:///{path}", poll_s=0.05), store, transport,
                    Registry.load())
    short = NewJob(operations=(NewOperation(task="sys.sleep", args={"seconds": 0.05}),))
    long = NewJob(operations=(NewOperation(task="sys.sleep", args={"seconds": 0.3}),))
    await store.insert_jobs([short, long])
    running = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(_started(store, [short.id, long.id]), 10)
        # The short one's outcome is being written (0.05-2.05 s) when the stop comes and
        # when the long one finishes (0.3 s): its outcome waits for the next batch, the
        # last one. Once that is written, the worker must see that nothing is left.
        await asyncio.sleep(0.1)
        worker.request_stop()
        await asyncio.wait_for(asyncio.shield(running), 3 * FIRST_WRITE_S)
    finally:
        worker.request_stop()
        if not running.done():
            running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    jobs = await store.get_jobs([short.id, long.id])
    await store.close()
    assert [j.status for j in jobs] == [JobStatus.SUCCEEDED, JobStatus.SUCCEEDED]
    assert store.batches == [1, 1]  # the second outcome came during the first write
