-- Conveyor schema, version 6 (PostgreSQL): running totals of ended operations.
--
-- The state counts of /v1/stats (and of the dashboard, which polls it) counted every
-- operation ever stored. Ended ones (succeeded, dead, cancelled) are most rows and only
-- grow: at 100k operations the counts took 30-200 ms, and they grow with the history.
-- They are now counted as they happen, per tenant, queue and state; the waiting and
-- running ones are still counted from the rows (as many as the backlog).
--
-- Each statement that ends operations or brings them back (complete_many, release,
-- rescue_expired, cancel_waiting, replay in queries.sql) adds to these totals itself,
-- in a data-modifying CTE: one row write per statement and state, not per operation (a
-- row trigger cost 10-20 µs per operation). Each connection adds to its own rows (shard
-- = its backend's pid), so no two transactions ever wait on each other for a total, nor
-- deadlock over two of them. expire_workers folds the rows of closed connections into
-- shard 0. Operations are never inserted ended nor deleted: whatever deletes them one
-- day must take them off these totals too.

CREATE TABLE op_totals (
    tenant text    NOT NULL,
    queue  text    NOT NULL,
    status text    NOT NULL,
    shard  integer NOT NULL,
    n      bigint  NOT NULL,
    PRIMARY KEY (tenant, queue, status, shard)
);

INSERT INTO op_totals (tenant, queue, status, shard, n)
SELECT tenant, queue, status, 0, count(*) FROM operations
WHERE status IN ('succeeded', 'dead', 'cancelled')
GROUP BY tenant, queue, status;
