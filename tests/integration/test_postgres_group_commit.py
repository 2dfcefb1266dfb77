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


@pytest.mark.parametrize("max_groups", [1, 2])
async def test_at_most_max_groups_commit_at_once_and_latecomers_share_the_next(
        pg_store: PostgresStore, max_groups: int) -> None:
    """Calls that arrive while a group commits join the next group, all of them; with
    room for a second group in flight, it starts at once (``postgres_commit_groups``)."""
    from conveyor.store.postgres.group import GroupCommit
    from conveyor.store.postgres.submit import insert_jobs

    running, most, groups = 0, 0, []
    first_began = asyncio.Event()

    async def insert(conn, jobs, want):  # type: ignore[no-untyped-def]
        nonlocal running, most
        running += 1
        most = max(most, running)
        groups.append(len(jobs))
        first_began.set()
        await asyncio.sleep(0.2)  # a slow commit: the latecomers arrive meanwhile
        try:
            return await insert_jobs(conn, jobs, want)
        finally:
            running -= 1

    group = GroupCommit(pg_store._pool, insert, max_groups=max_groups)
    first = asyncio.create_task(group.run([job(op("t.one"))]))
    await first_began.wait()
    latecomers = await asyncio.gather(*(group.run([job(op("t.one"))]) for _ in range(39)))
    answers = [await first, *latecomers]
    await group.close()
    assert groups == [1, 39]
    assert most == max_groups  # the second group waited for the first only with one
    ids = [a[0].job_id for a in answers]
    assert len(set(ids)) == 40 and len(await pg_store.get_jobs(ids)) == 40


def test_commit_groups_reach_the_store() -> None:
    from conveyor.config import load_config
    from conveyor.errors import ConfigError
    from conveyor.wiring import make_store

    url = {"store": "postgresql://u@127.0.0.1:1/db"}
    one = make_store(load_config(url, environ={}))
    two = make_store(load_config(url, environ={"CONVEYOR_POSTGRES_COMMIT_GROUPS": "2"}))
    assert isinstance(one, PostgresStore) and isinstance(two, PostgresStore)
    assert (one._group._max_groups, two._group._max_groups) == (1, 2)
    with pytest.raises(ConfigError, match="postgres_commit_groups"):
        load_config(url, environ={"CONVEYOR_POSTGRES_COMMIT_GROUPS": "0"})
