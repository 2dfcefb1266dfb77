"""Upgrading a PostgreSQL database from schema version 4 to the latest (lean indexes in 5).

Version 5 replaces the outbox's update trigger (to test its condition without a function
call): a Kafka-tier database keeps it enabled, a store-tier one keeps it disabled. Rows
written before the upgrade carry no operation count (0) and still get their job's status
derived when they finish.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from conveyor.model import JobStatus, Outcome
from conveyor.store.postgres import SCHEMA_VERSION, PostgresStore
from conveyor.store.postgres.outbox import OUTBOX_SQL
from conveyor.testing.contract_support import get_job, insert, job, op
from tests.support.pg_fixtures import pg_database, pg_url
from tests.support.postgres import migrate_to

__all__ = ["pg_database", "pg_url"]


def _at_version_4(url: str, *, outbox: bool) -> None:
    migrate_to(url, 4)
    with psycopg.connect(url, autocommit=True) as conn:
        if outbox:
            conn.execute(OUTBOX_SQL["outbox_enable_insert"])
            conn.execute(OUTBOX_SQL["outbox_enable_update"])


def _update_trigger_enabled(url: str) -> bool:
    with psycopg.connect(url, autocommit=True) as conn:
        [(state,)] = conn.execute(
            "SELECT tgenabled FROM pg_trigger WHERE tgrelid = 'operations'::regclass "
            "AND tgname = 'operations_outbox_update'").fetchall()
    return bool(state != "D")


@pytest.mark.parametrize("outbox", [True, False], ids=["kafka-tier", "store-tier"])
async def test_upgrade_keeps_the_outbox_trigger_state(pg_url: str, outbox: bool) -> None:
    _at_version_4(pg_url, outbox=outbox)
    store = PostgresStore(pg_url)
    try:
        assert await store.migrate() == SCHEMA_VERSION
        await store.open()
    finally:
        await store.close()
    assert _update_trigger_enabled(pg_url) is outbox
    with psycopg.connect(pg_url, autocommit=True) as conn:
        options = dict(conn.execute(
            "SELECT relname, reloptions FROM pg_class WHERE relname IN "
            "('operations', 'jobs', 'outbox') AND relnamespace = current_schema()::regnamespace"
        ).fetchall())
    # the queue's tables are vacuumed early and without pauses (dead index entries)
    for table in ("operations", "jobs", "outbox"):
        assert "autovacuum_vacuum_cost_delay=0" in options[table], (table, options)
    assert "fillfactor=50" in options["jobs"]


async def test_operations_written_before_the_upgrade_end_their_jobs(pg_url: str) -> None:
    _at_version_4(pg_url, outbox=False)
    with psycopg.connect(pg_url, autocommit=True) as conn:  # as version 4 wrote them
        conn.execute("INSERT INTO jobs VALUES ('one', 'default', 'default', 'queued', "
                     "'{}', '{}', NULL, NULL, now())")
        conn.execute("INSERT INTO operations (id, job_id, tenant, queue, task, args, "
                     "priority, status, max_attempts, created_at, run_at) VALUES "
                     "('op-one', 'one', 'default', 'default', 'sys.noop', '{}', 0, "
                     "'queued', 3, now(), now())")
    store = PostgresStore(pg_url)
    await store.migrate()
    await store.open()
    try:
        [new_single] = await insert(store, job(op("sys.noop")))
        [new_pair] = await insert(store, job(op("sys.noop"), op("sys.noop")))
        claims = await store.claim(["default"], "w", 10, 30.0)
        assert len(claims) == 4
        by_job: dict[str, list[Any]] = {}
        for claim in claims:
            by_job.setdefault(claim.job_id, []).append(claim)
        assert (await get_job(store, "one")).status is JobStatus.RUNNING
        accepted = await store.complete_many(
            [Outcome.succeeded(c, None) for c in by_job["one"] + by_job[new_single]]
            + [Outcome.succeeded(by_job[new_pair][0], None)])
        assert accepted == [True, True, True]
        assert (await get_job(store, "one")).status is JobStatus.SUCCEEDED
        assert (await get_job(store, new_single)).status is JobStatus.SUCCEEDED
        assert (await get_job(store, new_pair)).status is JobStatus.RUNNING
        await store.complete_many([Outcome.succeeded(by_job[new_pair][1], None)])
        assert (await get_job(store, new_pair)).status is JobStatus.SUCCEEDED
    finally:
        await store.close()
