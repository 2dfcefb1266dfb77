-- Conveyor schema, version 4 (SQLite): running totals of ended operations.
--
-- The state counts of /v1/stats (and of the dashboard, which polls it) counted every
-- operation ever stored. Ended ones (succeeded, dead, cancelled) are most rows and only
-- grow: at 100k operations one count took 30-200 ms, and it grows with the history. They
-- are now counted as they happen, per tenant, queue and state, by the store's own
-- statements that end operations or bring them back (add_op_totals, once per batch);
-- the waiting and running ones are still counted from the rows (operations_status: as
-- many as the backlog). Triggers were tried first: with a trigger on its status, every
-- update of an operation (claims too) got slower, and the embedded drain lost a quarter
-- of its rate. Operations are never inserted ended nor deleted: whatever deletes them
-- one day must take them off these totals too.

CREATE TABLE IF NOT EXISTS op_totals (
    tenant TEXT NOT NULL,
    queue  TEXT NOT NULL,
    status TEXT NOT NULL,
    n      INTEGER NOT NULL,
    PRIMARY KEY (tenant, queue, status)
) WITHOUT ROWID;

INSERT INTO op_totals (tenant, queue, status, n)
SELECT tenant, queue, status, COUNT(*) FROM operations
WHERE status IN ('succeeded', 'dead', 'cancelled')
GROUP BY tenant, queue, status;
