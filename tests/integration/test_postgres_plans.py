"""PostgreSQL plans of the statements a worker runs per batch, under stale statistics.

The statistics are taken while every row is finished; then a burst of waiting work
arrives (as after an idle period, before autovacuum analyses again). Statements that
address rows by key must still find them by key: with the status test usable as an
index condition, the planner would trust its estimate of "almost nothing waiting" (or
running) and scan every such row of a status index instead, or join whole tables (tens
of milliseconds per batch).

Listings with a status filter use the partial index of their status, and job status
changes are HOT updates (no index holds a job's status).
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
from psycopg import sql

from conveyor.store.postgres import PostgresStore
from conveyor.store.postgres.core import SQL
from conveyor.store.postgres.outbox import OUTBOX_SQL
from conveyor.store.rows import JOB_STATUS_OF_SINGLE
from tests.support.pg_fixtures import pg_database, pg_store, pg_url

__all__ = ["pg_database", "pg_store", "pg_url"]

FINISHED = 2_000
WAITING = 20_000
BATCH = 256  # a worker's claim_batch


def _stale_statistics(conn: psycopg.Connection[Any]) -> None:
    conn.execute("INSERT INTO jobs SELECT 'done' || g, 't', 'q', 'succeeded', '{}', '{}', "
                 "NULL, NULL, now() FROM generate_series(1, %s) g", (FINISHED,))
    conn.execute("INSERT INTO operations (id, job_id, tenant, queue, task, args, priority, "
                 "status, max_attempts, created_at, run_at, finished_at, job_ops) "
                 "SELECT 'op-done' || g, 'done' || g, 't', 'q', 'sys.noop', '{}', 0, "
                 "'succeeded', 3, now(), now(), now(), 1 FROM generate_series(1, %s) g",
                 (FINISHED,))
    conn.execute("ANALYZE jobs")
    conn.execute("ANALYZE operations")
    conn.execute("INSERT INTO jobs SELECT 'wait' || g, 't', 'q', 'queued', '{}', '{}', "
                 "NULL, NULL, now() FROM generate_series(1, %s) g", (WAITING,))
    conn.execute("INSERT INTO operations (id, job_id, tenant, queue, task, args, priority, "
                 "status, max_attempts, created_at, run_at, job_ops) "
                 "SELECT 'op-wait' || g, 'wait' || g, 't', 'q', 'sys.noop', '{}', 0, "
                 "'queued', 3, now(), now(), 1 FROM generate_series(1, %s) g", (WAITING,))


def _nodes(conn: psycopg.Connection[Any], statement: str,
           params: dict[str, Any]) -> list[dict[str, Any]]:
    """Every node of the statement's plan."""
    [(plan,)] = conn.execute("EXPLAIN (FORMAT JSON) " + statement, params).fetchall()
    found: list[dict[str, Any]] = []

    def walk(node: dict[str, Any]) -> None:
        found.append(node)
        for child in node.get("Plans", []):
            walk(child)

    walk((plan if isinstance(plan, list) else json.loads(plan))[0]["Plan"])
    return found


def _indexes(conn: psycopg.Connection[Any], statement: str, params: dict[str, Any]) -> set[str]:
    """The indexes the plan reads, and ``"Seq Scan on <table>"`` for each table it scans."""
    nodes = _nodes(conn, statement, params)
    return ({n["Index Name"] for n in nodes if "Index Name" in n}
            | {f"Seq Scan on {n['Relation Name']}" for n in nodes
               if n.get("Node Type") == "Seq Scan"})


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
            "claim_head": _indexes(conn, SQL["claim_head"], {
                "queue": "q", "limit": 100, "worker_id": "w", "lease_s": 30.0}),
            "delivered_candidates": _indexes(conn, OUTBOX_SQL["delivered_candidates"],
                                             {"ids": op_ids}),
            "claim_delivered_free": _indexes(conn, OUTBOX_SQL["claim_delivered_free"], {
                "ids": op_ids, "worker_id": "w", "lease_s": 30.0, "park_s": 0.5}),
        }
    running = {"op_ids": op_ids, "tokens": [1] * 100}
    with psycopg.connect(pg_url, autocommit=True) as conn:
        plans |= {
            "complete_many": _indexes(conn, SQL["complete_many"], _outcomes(
                running, single_only=True)),
            "extend_leases": _indexes(conn, SQL["extend_leases"], {**running, "lease_s": 30.0}),
            "release": _indexes(conn, SQL["release"], {"op_id": op_ids[0], "lease_token": 1}),
            "cancel_running": _indexes(conn, SQL["cancel_running"], {"ids": job_ids}),
            "refresh_job_status": _indexes(conn, SQL["refresh_job_status"], {"ids": job_ids}),
        }
    for name in ("complete_many", "extend_leases", "release"):
        assert "operations_id_key" in plans[name], (name, plans[name])
        assert "operations_leases" not in plans[name], (name, plans[name])
    assert "operations_job" in plans["cancel_running"]
    assert {"operations_job", "jobs_pkey"} <= plans["refresh_job_status"]
    assert "jobs_pkey" in plans["complete_many"]  # the end of jobs of one operation
    assert "jobs_pkey" in plans["mark_jobs_running"]
    assert "operations_pkey" in plans["claim_update"]
    assert "operations_id_key" in plans["claim_ids"]
    assert "operations_id_key" in plans["delivered_candidates"]
    assert {"operations_id_key", "operations_pkey"} <= plans["claim_delivered_free"]
    # The one-statement claim reads the ready order (its head), and its jobs by key.
    assert "operations_ready" in plans["claim_head"]
    assert "jobs_pkey" in plans["claim_head"]
    assert "Seq Scan on jobs" not in plans["claim_head"]
    for name, indexes in plans.items():
        allowed = {"operations_ready"} if name == "claim_head" else set()
        assert not indexes & {"jobs_status", "operations_ready", "operations_status"} - allowed, (
            name, indexes)


async def test_generic_plans_of_the_one_statement_paths_find_rows_by_key(
    pg_store: PostgresStore, pg_url: str
) -> None:
    """psycopg prepares a statement on its sixth run, and PostgreSQL may then plan it
    once for any parameters (a generic plan: a `LIMIT $n` is taken as a tenth of the
    table, a batch array as 10 rows). The one-statement claim and outcome batch must
    still find each row by key: no scan of a table (seen: 40 ms instead of ~5 for 256
    rows), and no loop that reads every row of the batch for each of them (seen, on a
    table of real submissions: 80 ms)."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        _stale_statistics(conn)
        conn.execute("ANALYZE")
        conn.execute("SET plan_cache_mode = force_generic_plan")
        conn.execute("BEGIN")
        head = _generic_plan(conn, "claim_head", {
            "queue": "q", "limit": BATCH, "worker_id": "w", "lease_s": 30.0})
        claimed = conn.execute(sql.SQL("EXECUTE claim_head({})").format(sql.SQL(", ").join(
            map(sql.Literal, ["q", BATCH, "w", 30.0])))).fetchall()
        assert len(claimed) == BATCH
        running = {"op_ids": [r[0] for r in claimed], "tokens": [r[9] for r in claimed]}
        outcomes = _generic_plan(conn, "complete_many", _outcomes(running, single_only=True))
        conn.execute("ROLLBACK")
    for plan in (head, outcomes):
        assert plan["scans"] <= {"Seq Scan on op_totals"}, plan
        assert plan["rows_removed_by_join_filter"] <= 4 * BATCH, plan
    assert outcomes["rows"] == BATCH


async def test_outcomes_one_at_a_time_reuse_one_plan(pg_store: PostgresStore,
                                                     pg_url: str) -> None:
    """Outcomes arrive one at a time at low rates. Once prepared, the outcome statement
    must keep its plan for any batch (generic) rather than plan again on every run: a
    plan of this statement costs the server more than running it."""
    runs = 12
    with psycopg.connect(pg_url, autocommit=True) as conn:
        _stale_statistics(conn)
        leases = conn.execute(
            "UPDATE operations SET status = 'running', lease_token = 1 WHERE seq IN ("
            " SELECT seq FROM operations WHERE status = 'queued' ORDER BY seq LIMIT %s)"
            " RETURNING id", (runs,)).fetchall()
        for (op_id,) in leases:
            done = conn.execute(SQL["complete_many"], _outcomes(
                {"op_ids": [op_id], "tokens": [1]}, single_only=True), prepare=True).fetchall()
            assert done[0][0] == op_id
        [(generic, custom)] = conn.execute(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements").fetchall()
    # PostgreSQL plans the first five runs for their values, then compares.
    assert (generic, custom) == (runs - 5, 5)


async def test_deliveries_one_at_a_time_reuse_one_plan(pg_store: PostgresStore,
                                                       pg_url: str) -> None:
    """At low rates a Kafka worker leases its deliveries one at a time, and the relay
    deletes the rows it published one at a time. Once prepared, both statements keep
    one plan for any ids, as the outcome statement does (planned for one id seen as a
    constant, they planned again on every run)."""
    runs = 12
    with psycopg.connect(pg_url, autocommit=True) as conn:
        _stale_statistics(conn)
        conn.execute("ANALYZE")
        for i in range(1, runs + 1):
            leased = conn.execute(OUTBOX_SQL["claim_delivered_free"], {
                "ids": [f"op-wait{i}"], "worker_id": "w", "lease_s": 30.0, "park_s": 0.5},
                prepare=True).fetchall()
            assert [r[0] for r in leased] == [f"op-wait{i}"]
        # And the relay's delete of what it published, one row at a time.
        conn.execute("INSERT INTO outbox (op_id, queue, kind, due_at) SELECT 'op-wait' "
                     "|| g, 'q', 'dispatch', now() FROM generate_series(1, %s) g", (runs,))
        conn.execute("ANALYZE outbox")
        for (row_id,) in conn.execute("SELECT id FROM outbox ORDER BY id").fetchall():
            deleted = conn.execute(OUTBOX_SQL["outbox_published"], {"ids": [row_id]},
                                   prepare=True)
            assert deleted.rowcount == 1
        assert conn.execute("SELECT generic_plans, custom_plans FROM pg_prepared_statements"
                            ).fetchall() == [(runs - 5, 5)] * 2


async def test_reads_of_one_job_at_a_time_reuse_one_plan(pg_store: PostgresStore,
                                                         pg_url: str) -> None:
    """A client polling a job reads it, and its operations, one job at a time: once
    prepared, both reads keep one plan for any ids, and that plan finds rows by key.
    The job's read takes no tenant (the store checks it on the rows): the API's, always
    as a tenant, is the same statement."""
    runs = 12
    with psycopg.connect(pg_url, autocommit=True) as conn:
        _stale_statistics(conn)
        conn.execute("ANALYZE")
        for i in range(1, runs + 1):
            ids = [f"wait{i}"]
            assert len(conn.execute(SQL["select_jobs"], {"ids": ids},
                                    prepare=True).fetchall()) == 1
            assert len(conn.execute(SQL["operations_of_jobs"], {"ids": ids},
                                    prepare=True).fetchall()) == 1
        assert conn.execute("SELECT generic_plans, custom_plans FROM pg_prepared_statements"
                            ).fetchall() == [(runs - 5, 5)] * 2
        conn.execute("SET plan_cache_mode = force_generic_plan")
        jobs = _generic_plan(conn, "select_jobs", {"ids": ["wait1", "done2"]})
        ops = _generic_plan(conn, "operations_of_jobs", {"ids": ["wait1", "done2"]})
    assert (jobs["scans"], jobs["rows"]) == (set(), 2)
    assert (ops["scans"], ops["rows"]) == (set(), 2)


def _generic_plan(conn: psycopg.Connection[Any], name: str, params: dict[str, Any]
                  ) -> dict[str, Any]:
    """Prepare the named statement, then run it under EXPLAIN ANALYZE (with the session's
    plan_cache_mode): the tables it scans whole, the rows its join filters dropped, and
    the rows it answered."""
    text = SQL[name]
    for i, param in enumerate(params, 1):
        text = text.replace(f"%({param})s", f"${i}").replace(f"%({param})b", f"${i}")
    conn.execute(f"PREPARE {name} AS {text}")
    args = sql.SQL(", ").join(sql.Literal(v) for v in params.values())
    [(plan,)] = conn.execute(sql.SQL("EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE {}({})").format(
        sql.Identifier(name), args)).fetchall()
    root = (plan if isinstance(plan, list) else json.loads(plan))[0]["Plan"]
    found: dict[str, Any] = {"scans": set(), "rows_removed_by_join_filter": 0,
                             "rows": root["Actual Rows"]}

    def walk(node: dict[str, Any]) -> None:
        if node.get("Node Type") == "Seq Scan":
            found["scans"].add(f"Seq Scan on {node['Relation Name']}")
        found["rows_removed_by_join_filter"] += node.get("Rows Removed by Join Filter", 0) * (
            node.get("Actual Loops", 1))
        for child in node.get("Plans", []):
            walk(child)

    walk(root)
    return found


def _outcomes(running: dict[str, list[Any]], *, single_only: bool) -> dict[str, Any]:
    """``complete_many``'s parameters: each of ``running``'s leases succeeded."""
    n = len(running["op_ids"])
    return {**running, "kinds": ["succeeded"] * n, "results": ["null"] * n,
            "errors": [None] * n, "retry_in_s": [0.0] * n, "single_only": single_only,
            "single_op": list(JOB_STATUS_OF_SINGLE), "single_job": list(
                JOB_STATUS_OF_SINGLE.values())}


def _list_params(**given: Any) -> dict[str, Any]:
    return {"tenant": None, "status": None, "queue": None, "task": None, "job_id": None,
            "ids": None, "after": None, "after_seq": 0, "limit": 50, **given}


async def test_listings_of_rare_statuses_use_their_partial_index(
    pg_store: PostgresStore, pg_url: str
) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        _stale_statistics(conn)
        conn.execute("ANALYZE operations")
        dead_ops = _indexes(conn, SQL["list_operations"], _list_params(status="dead"))
        failed_jobs = _indexes(conn, SQL["list_jobs"], _list_params(status="failed"))
        cancelled_jobs = _indexes(conn, SQL["list_jobs"], _list_params(status="cancelled"))
    assert "operations_ended_badly" in dead_ops
    assert "Seq Scan on operations" not in dead_ops
    assert "operations_ended_badly" in failed_jobs
    assert "operations_ended_badly" in cancelled_jobs


async def test_job_status_changes_are_hot_updates(pg_store: PostgresStore, pg_url: str) -> None:
    """No index entry is written when a job starts and ends: its row is updated in place."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("INSERT INTO jobs SELECT 'j' || g, 't', 'q', 'queued', '{}', '{}', "
                     "NULL, NULL, now() FROM generate_series(1, 200) g")
        conn.execute("INSERT INTO operations (id, job_id, tenant, queue, task, args, "
                     "priority, status, max_attempts, created_at, run_at, lease_token, job_ops) "
                     "SELECT 'op' || g, 'j' || g, 't', 'q', 'sys.noop', '{}', 0, "
                     "'running', 3, now(), now(), 1, 1 FROM generate_series(1, 200) g")
        ids = [f"j{g}" for g in range(1, 201)]
        conn.execute(SQL["mark_jobs_running"], {"ids": ids})
        running = {"op_ids": [f"op{g}" for g in range(1, 201)], "tokens": [1] * 200}
        done = conn.execute(SQL["complete_many"], _outcomes(running, single_only=True))
        assert len(done.fetchall()) == 200  # every job ended by the same statement
        conn.execute("SELECT pg_stat_force_next_flush()")
        conn.execute("SELECT 1")  # the flush happens at the end of the previous statement
        [(updated, hot)] = conn.execute(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables "
            "WHERE relname = 'jobs' AND schemaname = current_schema()").fetchall()
    assert updated == 400
    assert hot >= 0.9 * updated, (hot, updated)


async def test_ready_depths_read_the_ready_index_only(pg_store: PostgresStore,
                                                     pg_url: str) -> None:
    """Backpressure's per-second read: the queues by skipping through the ready index and
    capped counts, never a scan of the table (statistics stale or fresh)."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        _stale_statistics(conn)
        stale = _indexes(conn, SQL["ready_depths"], {"cap": 1001})
        conn.execute("ANALYZE operations")
        fresh = _indexes(conn, SQL["ready_depths"], {"cap": 1001})
    assert await pg_store.ready_depths(1001) == {"q": 1001}
    for plan in (stale, fresh):
        assert plan == {"operations_ready"}, plan


async def test_statistics_read_the_ready_index_after_a_burst_drained(
    pg_store: PostgresStore, pg_url: str
) -> None:
    """The statistics are taken with a burst just loaded (every row waiting), then the
    burst is drained: the counts of ``/v1/stats`` still read the waiting operations
    through the ready index, not the whole table (until autovacuum analyzes again)."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("INSERT INTO jobs SELECT 'wait' || g, 't', 'q', 'queued', '{}', '{}', "
                     "NULL, NULL, now() FROM generate_series(1, %s) g", (WAITING,))
        conn.execute("INSERT INTO operations (id, job_id, tenant, queue, task, args, "
                     "priority, status, max_attempts, created_at, run_at, job_ops) "
                     "SELECT 'op-wait' || g, 'wait' || g, 't', 'q', 'sys.noop', '{}', 0, "
                     "'queued', 3, now(), now(), 1 FROM generate_series(1, %s) g",
                     (WAITING,))
        conn.execute("ANALYZE operations")
        conn.execute("UPDATE operations SET status = 'succeeded', finished_at = now()")
        for tenant in (None, "t"):
            waiting = _indexes(conn, SQL["stats_waiting"], {"tenant": tenant})
            assert "operations_ready" in waiting, waiting
            assert "Seq Scan on operations" not in waiting, waiting
            counts = _indexes(conn, SQL["stats_counts"], {"tenant": tenant})
            assert "Seq Scan on operations" not in counts, counts


async def test_relay_claim_updates_its_rows_by_key_when_the_outbox_looked_empty(
    pg_store: PostgresStore, pg_url: str
) -> None:
    """The outbox is vacuumed empty (as the relay's compaction leaves it after a drain),
    then a burst arrives: the claim must still update the rows it claimed by key. Joined
    with them, the plan took the outbox for one row and compared each of its rows with
    each claimed one (0.3-1.2 s per claim of 500 with 40,000 rows waiting)."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE outbox")
        conn.execute("INSERT INTO outbox (op_id, queue, key, kind, due_at) "
                     "SELECT 'op' || g, 'q', NULL, 'dispatch', now() "
                     "FROM generate_series(1, %s) g", (WAITING,))
        nodes = _nodes(conn, OUTBOX_SQL["outbox_claim"], {"limit": 500, "lease_s": 30.0})
    updated = [n for n in nodes if n.get("Relation Name") == "outbox"
               and n.get("Alias", "").startswith("b") and "Scan" in n["Node Type"]]
    assert updated, nodes
    for node in updated:  # an index scan, or a bitmap heap scan rechecking its condition
        condition = node.get("Index Cond") or node.get("Recheck Cond") or ""
        assert "id = ANY" in condition, node
