"""Running totals of ended operations (SQLite schema 4, PostgreSQL schema 6), which the
state counts of ``stats`` read instead of every row, and PostgreSQL's finishes per slot
(schema 7), which its rates read: an upgraded database counts what ended before the
upgrade, and PostgreSQL folds the totals of closed connections into one row without
changing them. Real SQLite files and a real PostgreSQL server."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import psycopg

from conveyor.model import ErrorInfo, OpFilter, OpStatus, Outcome
from conveyor.store.base import Store
from conveyor.store.postgres import SCHEMA_VERSION as PG_VERSION
from conveyor.store.postgres import PostgresStore
from conveyor.store.recent import SLOT_S, SLOTS_1M, SLOTS_5M, slot_of
from conveyor.store.sqlite import SCHEMA_VERSION as SQLITE_VERSION
from conveyor.store.sqlite import SQLiteStore
from conveyor.testing.contract_support import LONG_LEASE_S, insert, job
from tests.support.pg_fixtures import pg_database, pg_url

__all__ = ["pg_database", "pg_url"]


async def _end_some(store: Store, queue: str = "q") -> None:
    """Four operations of two tenants end: three succeeded, one dead."""
    await insert(store, job("t.a", "t.b", "t.c", queue=queue),
                 job("t.a", queue=queue, tenant="other"))
    claims = await store.claim([queue], "w1", 4, LONG_LEASE_S)
    assert len(claims) == 4
    outcomes = [Outcome.dead(claims[0], ErrorInfo("Boom", "x")),
                *(Outcome.succeeded(c, None) for c in claims[1:])]
    assert await store.complete_many(outcomes) == [True] * 4


async def _counts_agree(store: Store) -> dict[str, dict[str, int]]:
    """The stats counts, checked against the operations themselves, for each tenant."""
    for tenant in (None, "default", "other"):
        truth: dict[str, dict[str, int]] = {}
        for o in await store.list_operations(OpFilter(tenant=tenant, limit=1000)):
            truth.setdefault(o.queue, {s.value: 0 for s in OpStatus})[o.status.value] += 1
        assert {s.queue: s.counts for s in await store.stats(tenant=tenant)} == truth
    return {s.queue: s.counts for s in await store.stats()}


async def test_sqlite_upgrade_counts_what_ended_before(tmp_path: Path) -> None:
    path = tmp_path / "upgrade.db"
    store = SQLiteStore(path)
    await store.migrate()
    await store.open()
    await _end_some(store)
    await store.close()
    with sqlite3.connect(path) as conn:  # back to version 3: no totals (nor job_ops)
        conn.executescript("DROP TABLE op_totals; ALTER TABLE operations DROP COLUMN job_ops;"
                           "DROP TABLE op_recent; UPDATE schema_version SET version = 3;")
    store = SQLiteStore(path)
    try:
        assert await store.migrate() == SQLITE_VERSION
        await store.open()
        counts = await _counts_agree(store)
        assert (counts["q"]["succeeded"], counts["q"]["dead"]) == (3, 1)
        [q] = await store.stats()  # and the rates count what finished before it (6)
        assert (q.finished_last_1m, q.finished_last_5m, q.failed_last_5m) == (4, 4, 1)
        await _end_some(store)  # and what ends after it
        counts = await _counts_agree(store)
        assert (counts["q"]["succeeded"], counts["q"]["dead"]) == (6, 2)
    finally:
        await store.close()


def _shards(url: str) -> list[int]:
    with psycopg.connect(url, autocommit=True) as conn:
        return sorted({int(r[0]) for r in conn.execute("SELECT shard FROM op_totals")})


async def test_postgres_upgrade_counts_what_ended_before(pg_url: str) -> None:
    store = PostgresStore(pg_url)
    await store.migrate()
    await store.open()
    await _end_some(store)
    await store.close()
    with psycopg.connect(pg_url, autocommit=True) as conn:  # back to version 5
        conn.execute("DROP TABLE op_totals")
        conn.execute("DROP TABLE op_recent")
        conn.execute("DROP FUNCTION conveyor_slot")
        conn.execute("UPDATE schema_version SET version = 5")
    store = PostgresStore(pg_url)
    try:
        assert await store.migrate() == PG_VERSION
        await store.open()
        counts = await _counts_agree(store)
        assert (counts["q"]["succeeded"], counts["q"]["dead"]) == (3, 1)
        assert _shards(pg_url) == [0]  # the upgrade's count
        [q] = await store.stats()  # and the rates count what finished before it (007)
        assert (q.finished_last_1m, q.finished_last_5m, q.failed_last_5m) == (4, 4, 1)
        await _end_some(store)
        counts = await _counts_agree(store)
        assert (counts["q"]["succeeded"], counts["q"]["dead"]) == (6, 2)
    finally:
        await store.close()


async def test_postgres_folds_the_totals_of_closed_connections(pg_url: str) -> None:
    first = PostgresStore(pg_url)
    await first.migrate()
    await first.open()
    await _end_some(first, "a")
    await _end_some(first, "b")
    written_by = _shards(pg_url)
    assert written_by and 0 not in written_by  # each connection writes its own rows
    before = await _counts_agree(first)
    await first.close()

    second = PostgresStore(pg_url)
    await second.open()
    try:
        for _ in range(100):  # until the closed connections' backends have exited
            await second.expire_workers(60.0, 3600.0)
            if _shards(pg_url) == [0]:
                break
            await asyncio.sleep(0.05)
        assert _shards(pg_url) == [0]
        assert await _counts_agree(second) == before
    finally:
        await second.close()


def _slots_back(url: str, n: int) -> None:
    """Move every counted finish ``n`` slots into the past."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE op_recent SET slot = slot - %s", (n,))


def _recent_rows(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        [(n,)] = conn.execute("SELECT count(*) FROM op_recent").fetchall()
        return int(n)


async def test_postgres_rates_count_finishes_per_slot_and_forget_old_slots(
        pg_url: str) -> None:
    store = PostgresStore(pg_url)
    await store.migrate()
    await store.open()
    try:
        await _end_some(store)
        rates = {s.queue: (s.finished_last_1m, s.finished_last_5m, s.failed_last_5m)
                 for s in await store.stats()}
        assert rates == {"q": (4, 4, 1)}
        [q] = await store.stats(tenant="other")
        assert (q.finished_last_1m, q.finished_last_5m, q.failed_last_5m) == (1, 1, 0)

        _slots_back(pg_url, SLOTS_1M)  # 60-65 s ago: out of the minute, in the five
        [q] = await store.stats()
        assert (q.finished_last_1m, q.finished_last_5m, q.failed_last_5m) == (0, 4, 1)
        await store.expire_workers(60.0, 3600.0)
        assert _recent_rows(pg_url) > 0, "slots of the five minutes are kept"

        _slots_back(pg_url, SLOTS_5M - SLOTS_1M)  # 300-305 s ago: out of both
        [q] = await store.stats()
        assert (q.finished_last_1m, q.finished_last_5m, q.failed_last_5m) == (0, 0, 0)
        assert q.counts["succeeded"] == 3, "the totals are not the rates"
        await store.expire_workers(60.0, 3600.0)
        assert _recent_rows(pg_url) == 0, "old slots are dropped with the totals' folding"
    finally:
        await store.close()


async def test_postgres_numbers_slots_as_every_store_does(pg_url: str) -> None:
    """``conveyor_slot()``, written into a migration, and :func:`slot_of` agree, on both
    sides of a slot's edges."""
    store = PostgresStore(pg_url)
    await store.migrate()
    edge = 1_800_000_000 // SLOT_S * SLOT_S
    with psycopg.connect(pg_url, autocommit=True) as conn:
        for at_s in (edge - 0.001, edge, edge + SLOT_S - 0.001, edge + SLOT_S, 1_733_412_345.6):
            [(slot,)] = conn.execute("SELECT conveyor_slot(to_timestamp(%s))",
                                     (at_s,)).fetchall()
            assert slot == slot_of(at_s), at_s
    assert slot_of(edge + SLOT_S) == slot_of(edge) + 1


async def test_sqlite_rates_count_finishes_per_slot_and_forget_old_slots(
        tmp_path: Path) -> None:
    now_s = [1_800_000_000.0]
    store = SQLiteStore(tmp_path / "rates.db", clock=lambda: now_s[0])
    await store.migrate()
    await store.open()
    try:
        await _end_some(store)
        [q] = await store.stats()
        assert (q.finished_last_1m, q.finished_last_5m, q.failed_last_5m) == (4, 4, 1)
        [q] = await store.stats(tenant="other")
        assert (q.finished_last_1m, q.finished_last_5m, q.failed_last_5m) == (1, 1, 0)

        now_s[0] += 60.0  # 12 slots on: out of the minute, in the five minutes
        [q] = await store.stats()
        assert (q.finished_last_1m, q.finished_last_5m, q.failed_last_5m) == (0, 4, 1)
        await _end_some(store)
        [q] = await store.stats()
        assert (q.finished_last_1m, q.finished_last_5m, q.failed_last_5m) == (4, 8, 2)

        now_s[0] += 240.0  # the first four out of the five minutes
        [q] = await store.stats()
        assert (q.finished_last_1m, q.finished_last_5m, q.failed_last_5m) == (0, 4, 1)
        assert q.counts["succeeded"] == 6, "the totals are not the rates"
        await store.expire_workers(60.0, 3600.0)
        with sqlite3.connect(tmp_path / "rates.db") as conn:
            assert conn.execute("SELECT SUM(finished) FROM op_recent").fetchone() == (4,), (
                "the slot out of the five minutes is dropped, the other kept")
    finally:
        await store.close()
