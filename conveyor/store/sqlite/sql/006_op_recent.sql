-- Conveyor schema, version 6 (SQLite): finishes counted per 5-second slot.
--
-- The rates of /v1/stats (finished in the last minute and five minutes, failed in the
-- last five) counted the rows that finished in the last five minutes: as many rows as
-- the throughput of five minutes (the embedded drain ends 35,000 operations a second).
-- The store's statements that end operations now add them to the slot of the store's
-- clock (add_op_recent, with add_op_totals, once per batch); a read sums at most 60
-- slots per tenant and queue. A slot is floor(epoch / 5 s); "the last minute" is the
-- current slot and the 11 before it (55 to 60 s), "the last five minutes" 60 slots (295
-- to 300 s). Older slots are deleted by expire_workers (every rescue interval). A
-- replayed operation keeps its finish counted here: finishes as they happened.

CREATE TABLE IF NOT EXISTS op_recent (
    tenant   TEXT    NOT NULL,
    queue    TEXT    NOT NULL,
    slot     INTEGER NOT NULL,  -- floor(epoch / 5 s) of the finishes counted
    finished INTEGER NOT NULL,  -- succeeded, dead and cancelled
    failed   INTEGER NOT NULL,  -- dead
    PRIMARY KEY (tenant, queue, slot)
) WITHOUT ROWID;

INSERT INTO op_recent (tenant, queue, slot, finished, failed)
SELECT tenant, queue, CAST(finished_at / 5 AS INTEGER), COUNT(*), SUM(status = 'dead')
FROM operations
WHERE finished_at >= unixepoch('now') - 300 AND status IN ('succeeded', 'dead', 'cancelled')
GROUP BY 1, 2, 3;
