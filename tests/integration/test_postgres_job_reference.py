"""Operations refer to their job without a foreign key (PostgreSQL schema version 8).

The key's check was one query per inserted operation, planned once per connection and
kept: planned while ``jobs`` was a few pages (a fresh table after a vacuum), it stayed a
sequential scan of the whole table for every operation after. These tests read what
PostgreSQL itself counted: after a burst of single-job submissions into a vacuumed empty
store, ``jobs`` was read by index, not scanned once per submission.
"""

from __future__ import annotations

import asyncio
import time

import psycopg

from conveyor.store.postgres import SCHEMA_VERSION, PostgresStore
from conveyor.testing.contract_support import get_job, insert, job
from tests.support.pg_fixtures import pg_database, pg_url
from tests.support.postgres import migrate_to

__all__ = ["pg_database", "pg_url"]

SUBMISSIONS = 300
STATS_WAIT_S = 30.0
"""How long to wait for the closed connections' statistics to reach ``pg_stat``."""


def _schema(url: str) -> str:
    with psycopg.connect(url, autocommit=True) as conn:
        [(schema,)] = conn.execute("SELECT current_schema()").fetchall()
    return str(schema)


def _foreign_keys(url: str) -> list[str]:
    with psycopg.connect(url, autocommit=True) as conn:
        return [name for (name,) in conn.execute(
            "SELECT conname FROM pg_constraint WHERE contype = 'f' "
            "AND conrelid = 'operations'::regclass").fetchall()]


async def test_a_new_store_has_no_foreign_key(pg_url: str) -> None:
    store = PostgresStore(pg_url)
    try:
        assert await store.migrate() == SCHEMA_VERSION
    finally:
        await store.close()
    assert _foreign_keys(pg_url) == []


async def test_upgrading_from_version_7_drops_the_key(pg_url: str) -> None:
    migrate_to(pg_url, 7)
    assert _foreign_keys(pg_url) == ["operations_job_id_fkey"]
    store = PostgresStore(pg_url)
    try:
        assert await store.migrate() == SCHEMA_VERSION
        await store.open()
        [job_id] = await insert(store, job("t.a", "t.b"))
        assert [o.task for o in (await get_job(store, job_id)).operations] == ["t.a", "t.b"]
    finally:
        await store.close()
    assert _foreign_keys(pg_url) == []


def _jobs_reads(url: str, schema: str) -> tuple[int, int]:
    """``jobs``' inserted rows and the rows sequential scans read, as counted so far."""
    with psycopg.connect(url, autocommit=True) as conn:
        [(inserted, scanned)] = conn.execute(
            "SELECT n_tup_ins, seq_tup_read FROM pg_stat_user_tables "
            "WHERE schemaname = %s AND relname = 'jobs'", (schema,)).fetchall()
    return int(inserted), int(scanned)


async def test_a_burst_into_a_vacuumed_empty_store_does_not_scan_jobs(pg_url: str) -> None:
    store = PostgresStore(pg_url, max_size=2)
    await store.migrate()
    schema = _schema(pg_url)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) jobs, operations")  # as `conveyor bench` settles
    await store.open()
    try:
        for _ in range(SUBMISSIONS):  # one job per statement, as B2's submissions come
            await insert(store, job("t.a"))
    finally:
        await store.close()  # its connections end, and report their counts
    deadline = time.monotonic() + STATS_WAIT_S
    inserted, scanned = _jobs_reads(pg_url, schema)
    while inserted < SUBMISSIONS and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        inserted, scanned = _jobs_reads(pg_url, schema)
    assert inserted == SUBMISSIONS
    # With the key, each submission after the sixth scanned every job before it: about
    # SUBMISSIONS**2 / 2 (45,000) rows. Without it, no submission reads jobs at all.
    assert scanned < SUBMISSIONS, scanned
