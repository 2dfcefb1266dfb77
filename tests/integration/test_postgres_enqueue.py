"""Transactional enqueue: the job exists if and only if the caller's transaction commits."""

from __future__ import annotations

import psycopg
import pytest

from conveyor.errors import ValidationError
from conveyor.model import JobFilter, JobStatus, OpStatus, TaskInfo
from conveyor.postgres import enqueue, enqueue_async
from conveyor.store.postgres import PostgresStore
from tests.support.pg_fixtures import pg_database, pg_store, pg_url

__all__ = ["pg_database", "pg_store", "pg_url"]

ADD = TaskInfo("math.add", "math", {"type": "object", "properties": {
    "a": {"type": "number"}, "b": {"type": "number"}}, "required": ["a", "b"],
    "additionalProperties": False}, "async", 4, 9.0, 2)


@pytest.fixture
async def store(pg_store: PostgresStore) -> PostgresStore:
    await pg_store.upsert_tasks([ADD])
    with psycopg.connect(pg_store.url, autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id int PRIMARY KEY, total int NOT NULL)")
    return pg_store


async def test_sync_enqueue_commits_with_the_business_write(store: PostgresStore) -> None:
    with psycopg.connect(store.url) as conn:  # one transaction, committed at the end
        conn.execute("INSERT INTO orders VALUES (1, 10)")
        job_id = enqueue(conn, "math.add", {"a": 1, "b": 2}, key="order-1")
        # Not visible to others before the commit.
        assert await store.get_jobs([job_id]) == []
    [job] = await store.get_jobs([job_id])
    [op] = job.operations
    assert (op.task, op.args, op.key, op.status) == ("math.add", {"a": 1, "b": 2}, "order-1",
                                                     OpStatus.QUEUED)
    # The published task's defaults apply, as through the API.
    assert (job.queue, op.max_attempts, op.timeout_s, op.priority) == ("math", 4, 9.0, 2)
    [claim] = await store.claim(["math"], "w1", 10, 30.0)
    assert claim.op_id == op.id


async def test_sync_enqueue_rolls_back_with_the_business_write(store: PostgresStore) -> None:
    with pytest.raises(RuntimeError), psycopg.connect(store.url) as conn:
        conn.execute("INSERT INTO orders VALUES (2, 20)")
        enqueue(conn, "math.add", {"a": 1, "b": 2})
        raise RuntimeError("the business logic failed after enqueueing")
    assert await store.list_jobs(JobFilter()) == []
    with psycopg.connect(store.url) as conn:
        assert conn.execute("SELECT count(*) FROM orders").fetchone() == (0,)


async def test_async_enqueue_commit_and_rollback(store: PostgresStore) -> None:
    async with await psycopg.AsyncConnection.connect(store.url) as conn:
        await conn.execute("INSERT INTO orders VALUES (3, 30)")
        kept = await enqueue_async(conn, "math.add", {"a": 3, "b": 4}, priority=7)
    async with await psycopg.AsyncConnection.connect(store.url) as conn:
        await conn.execute("INSERT INTO orders VALUES (4, 40)")
        dropped = await enqueue_async(conn, "math.add", {"a": 5, "b": 6})
        await conn.rollback()
    assert [j.id for j in await store.list_jobs(JobFilter())] == [kept]
    assert await store.get_jobs([dropped]) == []
    [job] = await store.get_jobs([kept])
    assert job.status is JobStatus.QUEUED and job.operations[0].priority == 7


async def test_enqueue_validates_against_published_tasks(store: PostgresStore) -> None:
    with psycopg.connect(store.url) as conn:
        with pytest.raises(ValidationError, match="unknown task"):
            enqueue(conn, "no.such.task", {})
        with pytest.raises(ValidationError):
            enqueue(conn, "math.add", {"a": "not a number"})
        unchecked = enqueue(conn, "not.published.yet", {"x": 1}, validate=False)
    assert [j.id for j in await store.list_jobs(JobFilter())] == [unchecked]


async def test_enqueue_idempotency_key_returns_the_first_job(store: PostgresStore) -> None:
    with psycopg.connect(store.url, autocommit=True) as conn:  # each call commits itself
        first = enqueue(conn, "math.add", {"a": 1, "b": 1}, idempotency_key="once")
        again = enqueue(conn, "math.add", {"a": 1, "b": 1}, idempotency_key="once")
    assert first == again
    assert len(await store.list_jobs(JobFilter())) == 1
