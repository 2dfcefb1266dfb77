"""PostgreSQL plans of the statements a worker runs per batch, under stale statistics.

The statistics are taken while every row is finished; then a burst of waiting work
arrives (as after an idle period, before autovacuum analyses again). Statements that
address rows by key must still find them by key: with the status test usable as an
index condition, the planner would trust its estimate of "almost nothing waiting" and
scan every waiting row of a status index instead (tens of milliseconds per batch).
"""

from __future__ import annotations

import json
from typing import Any

import psycopg

from conveyor.store.postgres import PostgresStore
from conveyor.store.postgres.core import SQL
from conveyor.store.postgres.outbox import OUTBOX_SQL
from tests.support.pg_fixtures import pg_database, pg_store, pg_url

__all__ = ["pg_database", "pg_store", "pg_url"]

FINISHED = 2_000
WAITING = 20_000


def _stale_statistics(conn: psycopg.Connection[Any]) -> None:
    conn.execute("INSERT INTO jobs SELECT 'done' || g, 't', 'q', 'succeeded', '{}', '{}', "
                 "NULL, NULL, now() FROM generate_series(1, %s) g", (FINISHED,))
    conn.execute("INSERT INTO operations (id, job_id, tenant, queue, task, args, priority, "
                 "status, max_attempts, created_at, run_at, finished_at) "
                 "SELECT 'op-done' || g, 'done' || g, 't', 'q', 'sys.noop', '{}', 0, "
                 "'succeeded', 3, now(), now(), now() FROM generate_series(1, %s) g",
                 (FINISHED,))
    conn.execute("ANALYZE jobs")
    conn.execute("ANALYZE operations")
    conn.execute("INSERT INTO jobs SELECT 'wait' || g, 't', 'q', 'queued', '{}', '{}', "
                 "NULL, NULL, now() FROM generate_series(1, %s) g", (WAITING,))
    conn.execute("INSERT INTO operations (id, job_id, tenant, queue, task, args, priority, "
                 "status, max_attempts, created_at, run_at) "
                 "SELECT 'op-wait' || g, 'wait' || g, 't', 'q', 'sys.noop', '{}', 0, "
                 "'queued', 3, now(), now() FROM generate_series(1, %s) g", (WAITING,))


def _indexes(conn: psycopg.Connection[Any], statement: str, params: dict[str, Any]) -> set[str]:
    [(plan,)] = conn.execute("EXPLAIN (FORMAT JSON) " + statement, params).fetchall()
    found: set[str] = set()

    def walk(node: dict[str, Any]) -> None:
        if "Index Name" in node:
            found.add(node["Index Name"])
        for child in node.get("Plans", []):
            walk(child)

    walk((plan if isinstance(plan, list) else json.loads(plan))[0]["Plan"])
    return found


async def test_batch_statements_find_rows_by_key_despite_stale_statistics(
    pg_store: PostgresStore, pg_url: str
) -> None:
    half = WAITING // 2
    seqs = list(range(FINISHED + half, FINISHED + half + 100))
    op_ids = [f"op-wait{g}" for g in range(half, half + 100)]
    job_ids = [f"wait{g}" for g in range(half, half + 100)]
    with psycopg.connect(pg_url, autocommit=True) as conn:
        _stale_statistics(conn)
        plans = {
            "mark_jobs_running": _indexes(conn, SQL["mark_jobs_running"], {"ids": job_ids}),
            "claim_update": _indexes(conn, SQL["claim_update"], {
                "seqs": seqs, "worker_id": "w", "lease_s": 30.0}),
            "claim_ids": _indexes(conn, SQL["claim_ids"], {
                "ids": op_ids, "worker_id": "w", "lease_s": 30.0}),
            "delivered_candidates": _indexes(conn, OUTBOX_SQL["delivered_candidates"],
                                             {"ids": op_ids}),
        }
    assert "jobs_pkey" in plans["mark_jobs_running"]
    assert "operations_pkey" in plans["claim_update"]
    assert "operations_id_key" in plans["claim_ids"]
    assert "operations_id_key" in plans["delivered_candidates"]
    for name, indexes in plans.items():
        assert not indexes & {"jobs_status", "operations_ready", "operations_status"}, (
            name, indexes)
