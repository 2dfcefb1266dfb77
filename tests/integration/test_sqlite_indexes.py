"""The SQLite store's indexes (schema 5): the statements of the hot path find their rows
by key or through the partial index of their state, and no index of every status exists
for a claim or an outcome to move its rows in. A database of an earlier version upgrades
in place and keeps what it holds. Real SQLite files."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any

from conveyor.model import ErrorInfo, OpFilter, OpStatus, Outcome
from conveyor.store.sqlite import SCHEMA_VERSION, SQLiteStore
from conveyor.store.sqlite.core import SQL
from conveyor.testing.contract_support import LONG_LEASE_S, insert, job

GONE = {"operations_status", "operations_worker", "jobs_status"}


async def _with_work(path: Path) -> None:
    """Finished, dead, running and waiting operations in one file."""
    store = SQLiteStore(path)
    await store.migrate()
    await store.open()
    try:
        await insert(store, *(job("t.a", queue="q") for _ in range(50)))
        claims = await store.claim(["q"], "w1", 30, LONG_LEASE_S)
        await store.complete_many([Outcome.dead(claims[0], ErrorInfo("Boom", "x")),
                                   *(Outcome.succeeded(c, None) for c in claims[1:20])])
    finally:
        await store.close()


def _plan(conn: sqlite3.Connection, name: str) -> str:
    """The plan of a named statement, every parameter NULL but the ones a plan needs."""
    sql = SQL[name]
    params: dict[str, Any] = {k: None for k in re.findall(r":(\w+)", sql)}
    params.update(now=0.0, limit=10, after_seq=0, timeout_s=1.0, cap=10)
    return " | ".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params))


async def test_hot_statements_use_keys_and_partial_indexes(tmp_path: Path) -> None:
    path = tmp_path / "plans.db"
    await _with_work(path)
    with sqlite3.connect(path) as conn:
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master "
                                              "WHERE type = 'index'")}
        assert not indexes & GONE
        assert "operations_dead" in indexes
        expected = {
            "claim": "operations_ready",
            "claim_ids": "sqlite_autoindex_operations_1",
            "mark_jobs_running": "sqlite_autoindex_jobs_1",
            "end_single_jobs": "sqlite_autoindex_jobs_1",
            "complete_many": "sqlite_autoindex_operations_1",
            "refresh_job_status": "operations_job",
            "extend_lease": "sqlite_autoindex_operations_1",
            "release": "sqlite_autoindex_operations_1",
            "rescue_expired": "operations_leases",
            "expire_leases_of_workers": "operations_leases",
            "cancel_waiting": "operations_job",
            "cancel_running": "operations_job",
            "replay": "operations_dead",
            "stats_oldest_ready": "operations_ready",
        }
        for name, index in expected.items():
            plan = _plan(conn, name)
            assert f"INDEX {index}" in plan, (name, plan)
        counts = _plan(conn, "stats_counts")
        assert "INDEX operations_ready" in counts and "INDEX operations_leases" in counts


async def test_a_version_4_file_upgrades_in_place(tmp_path: Path) -> None:
    path = tmp_path / "v4.db"
    await _with_work(path)
    with sqlite3.connect(path) as conn:  # its indexes as version 4 left them
        conn.executescript("DROP INDEX operations_dead;"
                           "CREATE INDEX operations_status ON operations (status, seq);"
                           "CREATE INDEX operations_worker ON operations (worker_id) "
                           "WHERE status = 'running';"
                           "CREATE INDEX jobs_status ON jobs (status, id);"
                           "ALTER TABLE operations DROP COLUMN job_ops;"
                           "DROP TABLE op_recent;"
                           "UPDATE schema_version SET version = 4;")
    store = SQLiteStore(path)
    try:
        assert await store.migrate() == SCHEMA_VERSION
        await store.open()
        [counts] = [s.counts for s in await store.stats()]
        assert (counts["queued"], counts["running"], counts["succeeded"], counts["dead"]) == (
            20, 10, 19, 1)
        [dead] = await store.list_operations(OpFilter(status=OpStatus.DEAD))
        assert await store.replay(OpFilter(ids=(dead.id,))) == [dead.id]
        [counts] = [s.counts for s in await store.stats()]
        assert (counts["queued"], counts["dead"]) == (21, 0)
        # operations written before: their jobs are derived; after: set from the outcome
        new_job, _ = await insert(store, job("t.a", queue="q"), job("t.a", "t.b", queue="q"))
        claims = await store.claim(["q"], "w2", 100, LONG_LEASE_S)
        assert await store.complete_many([Outcome.succeeded(c, None) for c in claims]) == [
            True] * len(claims) and len(claims) == 24
        jobs = await store.get_jobs(list({c.job_id for c in claims}))
        assert {j.status.value for j in jobs} == {"succeeded"} and new_job in {j.id for j in jobs}
    finally:
        await store.close()
    with sqlite3.connect(path) as conn:
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master "
                                              "WHERE type = 'index'")}
    assert not indexes & GONE and "operations_dead" in indexes
