-- Conveyor schema, version 3 (PostgreSQL): the transactional outbox of the Kafka tier.
--
-- Every time an operation becomes ready to be carried to a worker (submitted, retried,
-- rescued, released, replayed) a row is written to `outbox` by a trigger, in the same
-- transaction as the change itself; the relay publishes due rows to Kafka and deletes
-- them. An operation that becomes `dead` gets a `dead` row (published to the queue's
-- dead-letter topic). The triggers are created disabled: the store tier never pays for
-- them, and a process of the Kafka tier enables them once (PostgresStore.enable_outbox).

CREATE TABLE outbox (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- publication order
    op_id         text NOT NULL,
    queue         text NOT NULL,
    key           text,
    kind          text NOT NULL,          -- 'dispatch' (to the queue's topic) or 'dead'
    due_at        timestamptz NOT NULL,   -- not published before (delays, backoffs)
    claimed_until timestamptz             -- a relay is publishing it until then
);
CREATE INDEX outbox_due ON outbox (due_at);
CREATE INDEX outbox_op ON outbox (op_id);

-- Bulk submissions: one statement-level trigger writes every new operation's row.
CREATE FUNCTION conveyor_outbox_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO outbox (op_id, queue, key, kind, due_at)
    SELECT n.id, n.queue, n.key, 'dispatch', n.run_at FROM new_operations n ORDER BY n.seq;
    RETURN NULL;
END $$;

CREATE TRIGGER operations_outbox_insert AFTER INSERT ON operations
    REFERENCING NEW TABLE AS new_operations
    FOR EACH STATEMENT EXECUTE FUNCTION conveyor_outbox_inserted();

-- State changes: back to waiting (retry, rescue, release, replay) or dead.
CREATE FUNCTION conveyor_outbox_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status IN ('scheduled', 'queued', 'retrying')
       AND (OLD.status NOT IN ('scheduled', 'queued', 'retrying')
            OR NEW.run_at IS DISTINCT FROM OLD.run_at) THEN
        INSERT INTO outbox (op_id, queue, key, kind, due_at)
        VALUES (NEW.id, NEW.queue, NEW.key, 'dispatch', NEW.run_at);
    ELSIF NEW.status = 'dead' AND OLD.status <> 'dead' THEN
        INSERT INTO outbox (op_id, queue, key, kind, due_at)
        VALUES (NEW.id, NEW.queue, NEW.key, 'dead', now());
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER operations_outbox_update AFTER UPDATE OF status, run_at ON operations
    FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.run_at IS DISTINCT FROM NEW.run_at)
    EXECUTE FUNCTION conveyor_outbox_updated();

ALTER TABLE operations DISABLE TRIGGER operations_outbox_insert;
ALTER TABLE operations DISABLE TRIGGER operations_outbox_update;
