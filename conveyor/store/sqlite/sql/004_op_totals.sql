-- Conveyor schema, version 4 (SQLite): running totals of ended operations.
--
-- The state counts of /v1/stats (and of the dashboard, which polls it) counted every
-- operation ever stored. Ended ones (succeeded, dead, cancelled) are most rows and only
-- grow: at 100k operations one count took 30-200 ms, and it grows with the history. They
-- are now counted as they happen, per tenant, queue and state, by the triggers below;
-- the waiting and running ones are still counted from the rows (operations_status:
-- as many as the backlog). Operations are never inserted ended nor deleted: whatever
-- deletes them one day must take them off these totals too.

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

-- One row written per operation that ends (the WHEN is tested without running the body).
CREATE TRIGGER IF NOT EXISTS operations_ended AFTER UPDATE OF status ON operations
WHEN NEW.status IN ('succeeded', 'dead', 'cancelled') AND NEW.status <> OLD.status
BEGIN
    INSERT INTO op_totals (tenant, queue, status, n)
    VALUES (NEW.tenant, NEW.queue, NEW.status, 1)
    ON CONFLICT (tenant, queue, status) DO UPDATE SET n = n + 1;
END;

-- A replayed dead operation leaves its total.
CREATE TRIGGER IF NOT EXISTS operations_reopened AFTER UPDATE OF status ON operations
WHEN OLD.status IN ('succeeded', 'dead', 'cancelled') AND NEW.status <> OLD.status
BEGIN
    UPDATE op_totals SET n = n - 1
    WHERE tenant = OLD.tenant AND queue = OLD.queue AND status = OLD.status;
END;
