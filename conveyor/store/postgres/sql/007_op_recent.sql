-- Conveyor schema, version 7 (PostgreSQL): finishes counted per 5-second slot.
--
-- The rates of /v1/stats (finished in the last minute and five minutes, failed in the
-- last five) counted the rows that finished in the last five minutes, through the
-- index on finished_at: as many rows as the throughput of five minutes. After a drain of
-- 100,000 operations one read took 90-130 ms (a sort spilled to disk), and at 15,000
-- operations/s it would read 4.5 million rows. The dashboard polls it, Prometheus scrapes
-- it through /metrics.
--
-- Each statement that ends operations (complete_many, release, rescue_expired,
-- cancel_waiting in queries.sql) now adds them to the slot of its transaction's time,
-- beside the running totals (006_op_totals.sql) and the same way: one row write per
-- statement, tenant and queue, each connection into its own rows (shard = its backend's
-- pid). A read sums at most 60 slots per queue and connection. A slot is
-- floor(epoch / 5 s) (conveyor_slot, the one place that knows); "the last minute" is
-- the current slot and the 11 before it (55 to 60 s), "the last five minutes" 60 slots
-- (295 to 300 s). Slots older than that are deleted with the folding of the totals
-- (every rescue interval, by every worker).
-- A replayed operation keeps its finish counted here: this counts finishes as they
-- happened, not rows as they are now.

CREATE FUNCTION conveyor_slot(at timestamptz) RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT floor(extract(epoch FROM at) / 5)::bigint $$;

CREATE TABLE op_recent (
    tenant   text    NOT NULL,
    queue    text    NOT NULL,
    slot     bigint  NOT NULL,  -- floor(epoch / 5 s) of the finishes counted
    shard    integer NOT NULL,
    finished bigint  NOT NULL,  -- succeeded, dead and cancelled
    failed   bigint  NOT NULL,  -- dead
    PRIMARY KEY (tenant, queue, slot, shard)
);

INSERT INTO op_recent (tenant, queue, slot, shard, finished, failed)
SELECT tenant, queue, conveyor_slot(finished_at), 0, count(*),
       count(*) FILTER (WHERE status = 'dead')
FROM operations
WHERE finished_at >= now() - interval '300 seconds'
  AND status IN ('succeeded', 'dead', 'cancelled')
GROUP BY 1, 2, 3;
