"""Group commit on PostgreSQL: concurrent submissions share transactions and statements,
yet each caller gets its own answer, and only after the commit."""

from __future__ import annotations

import asyncio
import time

import pytest

from conveyor.model import JobFilter, NewJob, OpFilter
from conveyor.store.postgres import PostgresStore
from conveyor.testing.contract_support import insert, job, op
from tests.support.pg_fixtures import pg_database, pg_store, pg_url

__all__ = ["pg_database", "pg_store", "pg_url"]


async def test_a_failing_call_does_not_undo_its_group(pg_store: PostgresStore) -> None:
    """One call of a group fails (its job id exists): it alone gets the error, every other
    concurrent call is created and visible."""
    [existing] = await insert(pg_store, job())
    good = [[job(op("t.good", key=f"k{i % 3}"))] for i in range(40)]
    bad = [NewJob(operations=(op("t.bad"),), id=existing)]
    calls = [pg_store.insert_jobs(jobs) for jobs in good[:20]] + [
        pg_store.insert_jobs(bad)] + [pg_store.insert_jobs(jobs) for jobs in good[20:]]
    results = await asyncio.gather(*calls, return_exceptions=True)
    failed = [r for r in results if isinstance(r, BaseException)]
    assert len(failed) == 1 and results[20] is failed[0]
    created = [r[0].job_id for r in results if not isinstance(r, BaseException)]
    assert created == [jobs[0].id for jobs in good]
    assert len(await pg_store.get_jobs(created)) == 40
    assert [o.task for o in await pg_store.list_operations(OpFilter(task="t.bad"))] == []


async def test_one_idempotency_key_in_one_group_resolves_to_the_first(
        pg_store: PostgresStore) -> None:
    """Two concurrent calls with one key, likely merged into one statement: one job."""
    calls = [pg_store.insert_jobs([job(idempotency_key="same", request_hash="h")])
             for _ in range(30)]
    answers = [a for batch in await asyncio.gather(*calls) for a in batch]
    assert sum(a.created for a in answers) == 1
    assert len({a.job_id for a in answers}) == 1
    assert len(await pg_store.list_jobs(JobFilter(limit=100))) == 1


@pytest.mark.parametrize("concurrency", [64])
async def test_concurrent_single_submissions_throughput(pg_store: PostgresStore,
                                                        concurrency: int) -> None:
    """Measured, not asserted tightly: grouping makes single submissions cheap."""
    count = 0
    stop_at = time.monotonic() + 2.0

    async def submitter() -> None:
        nonlocal count
        while time.monotonic() < stop_at:
            await pg_store.insert_jobs([job(op("t.one"))])
            count += 1

    started = time.monotonic()
    await asyncio.gather(*(submitter() for _ in range(concurrency)))
    rate = count / (time.monotonic() - started)
    assert len(await pg_store.list_operations(OpFilter(limit=100_000))) == count
    print(f"\n{concurrency} concurrent single-job submissions: {rate:.0f} jobs/s")
