"""The SQLite store's writer thread: calls made while a group transaction runs form the
next one, which the writer starts itself the moment the last one committed (without a
turn of the event loop, which may be busy); claims in it go first, in a transaction of
their own; a call that fails inside a group fails only its caller. Real SQLite files."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from conveyor.errors import StoreUnavailable
from conveyor.store.sqlite import SQLiteStore
from conveyor.testing.contract_support import job


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    opened = SQLiteStore(tmp_path / "writer.db")
    await opened.migrate()
    await opened.open()
    yield opened
    await opened.close()


def _stored(path: Path, job_id: str) -> bool:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT 1 FROM jobs WHERE id = ?", (job_id,)).fetchone() is not None


async def test_writes_commit_while_the_event_loop_is_busy(store: SQLiteStore) -> None:
    first, second = job("t.a"), job("t.a")
    answers = [asyncio.ensure_future(store.insert_jobs([j])) for j in (first, second)]
    await asyncio.sleep(0)  # both calls are made; the first group has started
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline and not _stored(store.path, second.id):
        time.sleep(0.01)  # blocks the event loop: it takes no turn meanwhile
    assert _stored(store.path, first.id) and _stored(store.path, second.id)
    assert [a.job_id for [a] in await asyncio.gather(*answers)] == [first.id, second.id]


async def test_a_failing_call_fails_only_its_caller(store: SQLiteStore) -> None:
    taken, other = job("t.a"), job("t.a")
    await store.insert_jobs([taken])
    results = await asyncio.gather(
        store.insert_jobs([job("t.a")]), store.insert_jobs([taken]),  # an id that exists
        store.insert_jobs([other]), return_exceptions=True)
    assert isinstance(results[1], sqlite3.IntegrityError)
    assert not isinstance(results[0], BaseException)
    assert not isinstance(results[2], BaseException) and results[2][0].job_id == other.id
    assert [j.id for j in await store.get_jobs([other.id])] == [other.id]


async def _in_one_group(store: SQLiteStore, middle: Callable[[sqlite3.Connection], None]
                        ) -> tuple[list[Any], list[str]]:
    """Two submissions with ``middle`` between them, all three in one group: the
    answers, and the ids of the two jobs."""
    entered, gate = threading.Event(), threading.Event()

    def hold(conn: sqlite3.Connection) -> None:
        entered.set()
        if not gate.wait(10.0):
            raise TimeoutError("the test never opened the gate")

    running = asyncio.ensure_future(store._write(hold))
    assert await asyncio.to_thread(entered.wait, 10.0)  # the writer waits in this group
    before, after = job("t.a"), job("t.a")
    calls = [asyncio.ensure_future(c) for c in (
        store.insert_jobs([before]), store._write(middle), store.insert_jobs([after]))]
    await asyncio.sleep(0)  # each call is made: all three wait for the next group
    assert len(store._pending) == 3
    gate.set()
    await running
    return await asyncio.gather(*calls, return_exceptions=True), [before.id, after.id]


async def test_a_call_that_fails_after_writing_is_undone_alone(store: SQLiteStore) -> None:
    """The middle call of a group writes and then raises: its write is undone, the other
    two commit, and only its caller gets the error."""
    undone = job("t.a")

    def write_then_fail(conn: sqlite3.Connection) -> None:
        store._insert_all(conn, [undone])
        raise RuntimeError("failed after writing")

    results, ids = await _in_one_group(store, write_then_fail)
    assert isinstance(results[1], RuntimeError)
    assert [a.job_id for a in results[0] + results[2]] == ids
    assert all(_stored(store.path, job_id) for job_id in ids)
    assert not _stored(store.path, undone.id)


async def test_an_error_that_ends_the_transaction_fails_the_whole_group(
        store: SQLiteStore) -> None:
    """Some SQLite errors (a full disk, an I/O error) roll the transaction back
    themselves, and no savepoint can keep the other calls' writes: every caller of the
    group gets the error, nothing of the group is stored, and the writer goes on."""
    def end_then_fail(conn: sqlite3.Connection) -> None:
        conn.execute("ROLLBACK")
        raise sqlite3.OperationalError("disk I/O error")

    results, ids = await _in_one_group(store, end_then_fail)
    assert [type(r) for r in results] == [StoreUnavailable] * 3
    assert not any(_stored(store.path, job_id) for job_id in ids)
    [answer] = await store.insert_jobs([later := job("t.a")])
    assert answer.job_id == later.id and _stored(store.path, later.id)


async def test_answers_reach_callers_after_many_groups(store: SQLiteStore) -> None:
    jobs = [job("t.a") for _ in range(300)]
    answers = await asyncio.gather(*(store.insert_jobs([j]) for j in jobs))
    assert [a.job_id for [a] in answers] == [j.id for j in jobs]
    assert len(await store.get_jobs([j.id for j in jobs])) == 300


async def test_a_claim_does_not_wait_for_the_writes_queued_with_it(store: SQLiteStore) -> None:
    """Outcomes queued before a claim would make the worker wait for both: the claim
    commits first and is answered while the other writes of its group still run."""
    waiting = job("t.a")
    await store.insert_jobs([waiting])
    busy, slow = threading.Event(), threading.Event()

    def hold(conn: sqlite3.Connection, gate: threading.Event) -> None:
        conn.execute("UPDATE tasks SET doc = doc")  # a write inside the group's transaction
        if not gate.wait(10.0):
            raise TimeoutError("the test never opened the gate")

    running = asyncio.ensure_future(store._write(hold, busy))  # the writer is now in it
    await asyncio.sleep(0.05)
    queued = asyncio.ensure_future(store._write(hold, slow))  # the next group: first ...
    await asyncio.sleep(0)
    claim = asyncio.ensure_future(store.claim(["default"], "w1", 10, 30.0))  # ... then this
    await asyncio.sleep(0)
    busy.set()
    try:
        claims = await asyncio.wait_for(claim, 5.0)
        assert [c.job_id for c in claims] == [waiting.id]
        assert not queued.done()  # the write queued before the claim is still running
        with sqlite3.connect(store.path) as conn:  # and the claim is committed
            assert conn.execute("SELECT status FROM operations WHERE id = ?",
                                (claims[0].op_id,)).fetchone() == ("running",)
    finally:
        slow.set()
        await asyncio.gather(running, queued)
