-- Named statements of the outbox (Kafka tier). See 003_outbox.sql for the table and the
-- triggers that fill it.

-- name: outbox_enabled
SELECT tgenabled <> 'D' AS enabled FROM pg_trigger
WHERE tgrelid = 'operations'::regclass AND tgname = 'operations_outbox_insert';

-- name: outbox_enable_insert
ALTER TABLE operations ENABLE TRIGGER operations_outbox_insert;

-- name: outbox_enable_update
ALTER TABLE operations ENABLE TRIGGER operations_outbox_update;

-- name: outbox_backfill
-- Operations that were waiting before the outbox was enabled (a store-tier database
-- switched to Kafka) get their row too.
INSERT INTO outbox (op_id, queue, key, kind, due_at)
SELECT o.id, o.queue, o.key, 'dispatch', o.run_at FROM operations o
WHERE o.status IN ('scheduled', 'queued', 'retrying')
  AND NOT EXISTS (SELECT 1 FROM outbox b WHERE b.op_id = o.id)
ORDER BY o.seq;

-- name: outbox_claim
-- Due rows no other relay is publishing, in publication (id) order; claimed for
-- lease_s. A relay killed mid-batch leaves them to be claimed again after the lease.
-- Each comes with what its message carries besides the id: the operation's trace
-- headers, and for a dead letter the operation itself (one statement, one round trip).
-- The relay's own bookkeeping (this claim, outbox_published) commits without waiting for
-- the WAL flush (`relay_commit`: synchronous_commit off for the statement's own
-- transaction): a server crash can only undo such a commit, and an undone claim or
-- delete means the rows are published again (a duplicate, skipped by workers), never
-- lost. Saves a disk flush on the path from submission to Kafka; set from within the
-- statement, it needs no transaction block (three round trips fewer).
-- The claimed rows are updated by key (`= ANY(ARRAY(...))`, an index condition). Joined
-- with `c` instead, the plan kept for this statement took the outbox for one row (its
-- statistics as the relay's compaction left them, empty) and compared every row of the
-- outbox with every claimed one: with a backlog of 40,000 rows a claim of 500 took
-- 0.3-1.2 s, so the relay fell further behind the more work waited.
WITH relay_commit AS MATERIALIZED (
    SELECT set_config('synchronous_commit', 'off', true) AS synchronous_commit),
c AS MATERIALIZED (
    SELECT id FROM outbox
    WHERE due_at <= now() AND (claimed_until IS NULL OR claimed_until < now())
    ORDER BY id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED),
claimed AS (
    UPDATE outbox b SET claimed_until = now() + make_interval(secs => %(lease_s)s)
    WHERE b.id = ANY(ARRAY(SELECT id FROM c))  -- by key, whatever the estimates
    RETURNING b.id, b.op_id, b.queue, b.key, b.kind)
SELECT b.id, b.op_id, b.queue, b.key, b.kind, o.id IS NOT NULL AS found, o.headers,
       CASE WHEN b.kind = 'dead' THEN o.job_id END AS job_id,
       CASE WHEN b.kind = 'dead' THEN o.task END AS task,
       CASE WHEN b.kind = 'dead' THEN o.args END AS args,
       CASE WHEN b.kind = 'dead' THEN o.attempts END AS attempts,
       CASE WHEN b.kind = 'dead' THEN o.error END AS error
FROM claimed b CROSS JOIN relay_commit LEFT JOIN operations o ON o.id = b.op_id
ORDER BY b.id;

-- name: outbox_published
-- Commits without waiting for the WAL flush (see outbox_claim). A DELETE runs a SELECT
-- in its WITH only where it reads it: the last condition is that read (always true).
-- The ids through a subquery, for one prepared plan (see claim_delivered_free).
WITH relay_commit AS MATERIALIZED (
    SELECT set_config('synchronous_commit', 'off', true) AS synchronous_commit)
DELETE FROM outbox
WHERE id = ANY(ARRAY(SELECT unnest(%(ids)b::bigint[])))
  AND (SELECT synchronous_commit FROM relay_commit) = 'off';

-- name: outbox_compact
-- The relay deletes every row it publishes; until a vacuum removes them, the dead rows
-- stay in the indexes, and each claim (and outbox_next_due) walks past them from the
-- oldest id on: after a drain of 100,000 operations an empty outbox took 3.7 ms to claim
-- from instead of 0.1 ms. Autovacuum comes back to a database only once a minute
-- (autovacuum_naptime), so the relay asks for it (OutboxCompaction). SKIP_LOCKED: a
-- vacuum already under way (another relay's, or autovacuum's) is enough.
VACUUM (SKIP_LOCKED) outbox;

-- name: outbox_backlog
SELECT queue, count(*) FILTER (WHERE due_at <= now()) AS due, count(*) AS total
FROM outbox GROUP BY queue;

-- name: outbox_next_due
-- Seconds until the earliest row nobody is publishing falls due (negative if one is
-- due, null if none). min() over the due_at index stops at the first unclaimed row; rows
-- claimed by a relay that died come back at its lease's end, found by the fallback poll.
SELECT extract(epoch FROM min(due_at) - now())::float8 AS wait_s
FROM outbox
WHERE claimed_until IS NULL OR claimed_until < now();

-- name: claim_delivered_free
-- Leasing delivered operations in one statement (its own transaction) when none of them
-- has a key: those waiting and due are leased (FOR UPDATE SKIP LOCKED checks the status
-- again on each row's latest version) and their jobs marked running; those waiting and
-- due that another claimer holds are parked, as delivered_park does. When one of them
-- has a key, nothing changes and `keyed` answers: the caller leases them with
-- delivered_candidates and claim_update (the key lock and its second snapshot).
-- Always answers at least one row: the leased ones, or one of NULLs; each carries the
-- ids parked. The ids come through a subquery (see select_jobs): seen as constants, a
-- delivery of one id made a plan cheaper than the generic one, so every run planned
-- again (0.35 ms of server CPU each, more than the statement's own run).
WITH d AS MATERIALIZED (
    SELECT o.seq, o.key FROM operations o
    WHERE o.id = ANY(ARRAY(SELECT unnest(%(ids)b::text[])))),
head AS MATERIALIZED (SELECT EXISTS (SELECT 1 FROM d WHERE d.key IS NOT NULL) AS keyed),
c AS MATERIALIZED (
    SELECT o.seq FROM operations o
    WHERE o.seq = ANY(ARRAY(SELECT seq FROM d))
      -- IS TRUE keeps the status test a filter (see queries.sql, mark_jobs_running)
      AND (o.status IN ('scheduled', 'queued', 'retrying')) IS TRUE
      AND o.run_at <= now()
      AND NOT (SELECT keyed FROM head)
    FOR UPDATE OF o SKIP LOCKED),
leased AS (
    UPDATE operations o
    SET status = 'running', attempts = o.attempts + 1, lease_token = o.lease_token + 1,
        worker_id = %(worker_id)s, started_at = clock_timestamp(),
        lease_expires_at = clock_timestamp() + make_interval(secs => %(lease_s)s)
    WHERE o.seq = ANY(ARRAY(SELECT seq FROM c))
    RETURNING o.id, o.job_id, o.queue, o.task, o.args, o.key, o.attempts, o.max_attempts,
              o.timeout_s, o.lease_token, o.created_at, o.headers, o.priority, o.seq),
running AS (
    UPDATE jobs SET status = 'running'
    WHERE id = ANY(ARRAY(SELECT job_id FROM leased)) AND (status = 'queued') IS TRUE),
parked AS (
    INSERT INTO outbox (op_id, queue, key, kind, due_at)
    SELECT o.id, o.queue, NULL, 'dispatch', now() + make_interval(secs => %(park_s)s)
    FROM operations o
    WHERE o.seq = ANY(ARRAY(SELECT seq FROM d)) AND o.seq <> ALL(ARRAY(SELECT seq FROM c))
      AND NOT (SELECT keyed FROM head)
      AND (o.status IN ('scheduled', 'queued', 'retrying')) IS TRUE AND o.run_at <= now()
    RETURNING op_id)
SELECT l.*, h.keyed, ARRAY(SELECT op_id FROM parked) AS parked
FROM head h LEFT JOIN leased l ON true;

-- name: delivered_candidates
-- Step 1 of leasing operations delivered by the log: those waiting, due and first of
-- their key (same rule as claim_candidates), then the key lock of each keyed one.
WITH c AS MATERIALIZED (
    SELECT o.seq, o.queue, o.key FROM operations o
    WHERE o.id = ANY(%(ids)b::text[])
      -- IS TRUE keeps the status test a filter (see queries.sql, mark_jobs_running)
      AND (o.status IN ('scheduled', 'queued', 'retrying')) IS TRUE
      AND o.run_at <= now()
      AND (o.key IS NULL OR NOT EXISTS (
            SELECT 1 FROM operations p
            WHERE p.queue = o.queue AND p.key = o.key AND p.seq <> o.seq
              AND p.status IN ('scheduled', 'queued', 'retrying', 'running')
              AND (p.status = 'running' OR p.seq < o.seq)))
    FOR UPDATE OF o SKIP LOCKED)
SELECT seq FROM c
WHERE c.key IS NULL
   OR pg_try_advisory_xact_lock(hashtextextended(c.queue || '/' || c.key, 0));

-- name: delivered_park
-- Delivered operations that are waiting and due but could not start (an earlier
-- operation of their key is still open): they re-enter the log park_s after now, or
-- after the latest run_at of the earlier ones still waiting (a retry's backoff), so the
-- partition moves on meanwhile and a long backoff does not make them spin.
INSERT INTO outbox (op_id, queue, key, kind, due_at)
SELECT o.id, o.queue, o.key, 'dispatch',
       greatest(now(), (SELECT max(p.run_at) FROM operations p
                        WHERE p.queue = o.queue AND p.key = o.key AND p.seq < o.seq
                          AND p.status IN ('scheduled', 'queued', 'retrying')))
       + make_interval(secs => %(park_s)s)
FROM operations o
WHERE o.id = ANY(%(ids)b::text[])
  AND (o.status IN ('scheduled', 'queued', 'retrying')) IS TRUE AND o.run_at <= now()
RETURNING op_id;

-- name: outbox_reconcile
-- Operations of a queue waiting (and due) for longer than older_than_s without a row in
-- the outbox: their message never reached a worker (a recreated topic, a lost mark).
-- Called only for queues whose consumer group has no lag.
INSERT INTO outbox (op_id, queue, key, kind, due_at)
SELECT o.id, o.queue, o.key, 'dispatch', now() FROM operations o
WHERE o.queue = %(queue)s
  AND o.status IN ('scheduled', 'queued', 'retrying')
  AND o.run_at <= now() - make_interval(secs => %(older_than_s)s)
  AND NOT EXISTS (SELECT 1 FROM outbox b WHERE b.op_id = o.id AND b.kind = 'dispatch')
ORDER BY o.seq
LIMIT %(limit)s
RETURNING op_id;
