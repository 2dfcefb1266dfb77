-- Conveyor schema, version 4 (PostgreSQL): the relay wakes when outbox rows are written.
--
-- Every statement that writes outbox rows (the triggers of 003_outbox.sql, parking,
-- reconciliation, backfill, whatever comes later) sends one pg_notify('conveyor_outbox',
-- ''), delivered at commit to the relays listening (PostgreSQL folds the repeats of one
-- transaction into one). A row due later wakes the relay too, which then waits until
-- the earliest due_at. Notifications only cut latency: a relay that missed one finds
-- the rows at its next fallback poll (relay_poll_s). The store tier writes no outbox
-- rows (its triggers stay disabled), so it never sends one.

CREATE FUNCTION conveyor_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM new_rows) THEN
        PERFORM pg_notify('conveyor_outbox', '');
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION conveyor_outbox_notify();
