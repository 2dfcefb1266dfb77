-- Named statements of the PostgreSQL store. Parameters are %(named)s (psycopg); arrays on
-- the worker's path are %(named)b: sent in binary, which costs the client a fraction of
-- quoting every element as text.
-- Every time is the database's: now() is the transaction's start, the same for every
-- statement of one transaction.

-- name: create_version_table
CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL);

-- name: migration_lock
-- Held until the migrating transaction ends: concurrent `conveyor migrate` runs queue up.
SELECT pg_advisory_xact_lock(1129207374, 1);

-- name: schema_version_exists
SELECT to_regclass('schema_version') IS NOT NULL AS present;

-- name: schema_version
SELECT max(version) AS version FROM schema_version;

-- name: clear_schema_version
DELETE FROM schema_version;

-- name: set_schema_version
INSERT INTO schema_version (version) VALUES (%(version)s);

-- name: now
SELECT extract(epoch FROM clock_timestamp())::double precision AS now;

-- name: ping
SELECT 1;

-- name: insert_jobs
-- Every job of the batch in one statement, in input order; idempotency-key and id clashes
-- are skipped (the caller looks them up). The ids of the created rows come back; a caller
-- that wants its jobs as stored runs it with `RETURNING *` (submit.INSERT_JOBS_RETURNING)
-- instead of selecting them again. The arrays are sent in binary: psycopg quotes every
-- element of a text-format array with regular expressions (about half the client's CPU
-- for a batch of 1,000).
INSERT INTO jobs (id, tenant, queue, status, metadata, headers, idempotency_key,
                  request_hash, created_at)
SELECT j.id, j.tenant, j.queue, 'queued', j.metadata::jsonb, j.headers::jsonb,
       j.idempotency_key, j.request_hash, now()
FROM unnest(%(ids)b::text[], %(tenants)b::text[], %(queues)b::text[], %(metadata)b::text[],
            %(headers)b::text[], %(idempotency_keys)b::text[], %(request_hashes)b::text[])
     WITH ORDINALITY AS j(id, tenant, queue, metadata, headers, idempotency_key,
                          request_hash, ord)
ORDER BY j.ord
ON CONFLICT DO NOTHING
RETURNING id;

-- name: insert_new_jobs
-- New jobs (none with an idempotency key) with their operations and the notification of
-- their queues, in one statement: its own transaction and one round trip, for a group
-- commit with nothing to look up. Without ON CONFLICT: a clashing id (random ids: a bug
-- upstream) fails the whole statement, so nothing is written, and the caller inserts
-- again with insert_jobs, which tells which job clashed. The same columns and values as
-- insert_jobs and insert_operations. A caller that wants its jobs as stored ends it
-- with submit.INSERT_NEW_JOBS_RETURNING's select instead.
WITH j AS (
    INSERT INTO jobs (id, tenant, queue, status, metadata, headers, idempotency_key,
                      request_hash, created_at)
    SELECT j.id, j.tenant, j.queue, 'queued', j.metadata::jsonb, j.headers::jsonb, NULL,
           j.request_hash, now()
    FROM unnest(%(ids)b::text[], %(tenants)b::text[], %(queues)b::text[],
                %(metadata)b::text[], %(headers)b::text[], %(request_hashes)b::text[])
         WITH ORDINALITY AS j(id, tenant, queue, metadata, headers, request_hash, ord)
    ORDER BY j.ord
    RETURNING *),
o AS (
    INSERT INTO operations (id, job_id, tenant, queue, task, args, key, priority, status,
                            max_attempts, timeout_s, created_at, run_at, headers, job_ops)
    SELECT o.id, o.job_id, o.tenant, o.queue, o.task, o.args::jsonb, o.key, o.priority,
           CASE WHEN o.delay_s > 0 THEN 'scheduled' ELSE 'queued' END,
           o.max_attempts, o.timeout_s, now(), now() + make_interval(secs => o.delay_s),
           o.headers::jsonb, o.job_ops
    FROM unnest(%(op_ids)b::text[], %(job_ids)b::text[], %(op_tenants)b::text[],
                %(op_queues)b::text[], %(tasks)b::text[], %(args)b::text[],
                %(keys)b::text[], %(priorities)b::int[], %(max_attempts)b::int[],
                %(timeouts_s)b::float8[], %(delays_s)b::float8[], %(op_headers)b::text[],
                %(job_ops)b::int[])
         WITH ORDINALITY AS o(id, job_id, tenant, queue, task, args, key, priority,
                              max_attempts, timeout_s, delay_s, headers, job_ops, ord)
    ORDER BY o.ord
    RETURNING *),
notified AS (
    SELECT count(pg_notify('conveyor_ready', q.queue)) AS n
    FROM (SELECT DISTINCT queue FROM o) AS q)
SELECT j.id FROM j, notified;

-- name: find_idempotent
SELECT j.id, j.tenant, j.idempotency_key, j.request_hash
FROM jobs j
JOIN unnest(%(tenants)b::text[], %(idempotency_keys)b::text[]) AS k(tenant, idempotency_key)
  ON j.tenant = k.tenant AND j.idempotency_key = k.idempotency_key;

-- name: insert_operations
-- seq (submission order) follows the input order. A caller that wants its jobs as
-- stored runs it with `RETURNING *` appended (submit.INSERT_OPERATIONS_RETURNING).
INSERT INTO operations (id, job_id, tenant, queue, task, args, key, priority, status,
                        max_attempts, timeout_s, created_at, run_at, headers, job_ops)
SELECT o.id, o.job_id, o.tenant, o.queue, o.task, o.args::jsonb, o.key, o.priority,
       CASE WHEN o.delay_s > 0 THEN 'scheduled' ELSE 'queued' END,
       o.max_attempts, o.timeout_s, now(), now() + make_interval(secs => o.delay_s),
       o.headers::jsonb, o.job_ops
FROM unnest(%(ids)b::text[], %(job_ids)b::text[], %(tenants)b::text[], %(queues)b::text[],
            %(tasks)b::text[], %(args)b::text[], %(keys)b::text[], %(priorities)b::int[],
            %(max_attempts)b::int[], %(timeouts_s)b::float8[], %(delays_s)b::float8[],
            %(headers)b::text[], %(job_ops)b::int[])
     WITH ORDINALITY AS o(id, job_id, tenant, queue, task, args, key, priority, max_attempts,
                          timeout_s, delay_s, headers, job_ops, ord)
ORDER BY o.ord;

-- name: notify_ready
-- Delivered at commit to every listening worker: work may be ready in these queues.
SELECT pg_notify('conveyor_ready', q) FROM unnest(%(queues)b::text[]) AS q;

-- name: select_jobs
-- The ids come through a subquery the planner does not look into, so every plan takes
-- them as a few rows and PostgreSQL keeps one prepared plan (see complete_many): read
-- one job at a time, seen as constants, they made each run plan again, which cost the
-- server more than the read. The caller's tenant is checked by the store on the rows
-- (at most one per id), not here: with `tenant = %(tenant)s` (or a form of it that
-- allows none), the tenant seen as a constant made an index condition on jobs_tenant
-- that looked cheaper than the kept plan, so every GET /v1/jobs/{id} of the API, which
-- always reads as a tenant, was planned again (1,002 plans for 1,000 reads; 0.05 ms of
-- server time each, twice the read).
SELECT * FROM jobs WHERE id = ANY(ARRAY(SELECT unnest(%(ids)b::text[])));

-- name: list_jobs
-- Run unprepared (planned with its values). No index holds a job's status (so status
-- changes are HOT updates): failed and cancelled jobs, the rare ones, are found through
-- their dead or cancelled operations (operations_ended_badly); the others are common or
-- recent, and are read newest first by id.
SELECT * FROM jobs
WHERE (%(tenant)s::text IS NULL OR tenant = %(tenant)s::text)
  AND (%(status)s::text IS NULL OR status = %(status)s::text)
  AND (%(status)s::text IS DISTINCT FROM 'failed'
       OR id IN (SELECT job_id FROM operations WHERE status = 'dead'))
  AND (%(status)s::text IS DISTINCT FROM 'cancelled'
       OR id IN (SELECT job_id FROM operations WHERE status = 'cancelled'))
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
  AND (%(after)s::text IS NULL OR id < %(after)s::text)
  AND (%(task)s::text IS NULL OR EXISTS (SELECT 1 FROM operations o
                                         WHERE o.job_id = jobs.id AND o.task = %(task)s::text))
ORDER BY id DESC
LIMIT %(limit)s;

-- name: operations_of_jobs
-- The ids through a subquery, for one prepared plan (see select_jobs).
SELECT * FROM operations WHERE job_id = ANY(ARRAY(SELECT unnest(%(ids)b::text[])))
ORDER BY seq;

-- name: list_operations
SELECT * FROM operations
WHERE (%(tenant)s::text IS NULL OR tenant = %(tenant)s::text)
  AND (%(status)s::text IS NULL OR status = %(status)s::text)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
  AND (%(task)s::text IS NULL OR task = %(task)s::text)
  AND (%(job_id)s::text IS NULL OR job_id = %(job_id)s::text)
  AND (%(ids)s::text[] IS NULL OR id = ANY(%(ids)s::text[]))
  AND seq > %(after_seq)s
ORDER BY seq
LIMIT %(limit)s;

-- name: lock_jobs
-- Taken before a job's status is derived again: the next statement then sees every
-- operation change committed by transactions that held these rows before us.
SELECT id FROM jobs WHERE id = ANY(%(ids)b::text[]) ORDER BY id FOR UPDATE;

-- name: refresh_job_status
-- Derive each job's status from its operations (same rule as model.job_status). One
-- lookup per job id, by index: a join planned on statistics taken before a burst arrived
-- would scan both tables instead (measured: 16 ms per 100 jobs at 30k rows, not 0.5).
UPDATE jobs SET status = s.status
FROM unnest(%(ids)b::text[]) AS k(id)
CROSS JOIN LATERAL (
    SELECT CASE
        WHEN count(*) FILTER (WHERE status NOT IN ('succeeded', 'dead', 'cancelled')) = 0 THEN
            CASE WHEN count(*) FILTER (WHERE status = 'dead') > 0 THEN 'failed'
                 WHEN count(*) FILTER (WHERE status = 'cancelled') > 0 THEN 'cancelled'
                 ELSE 'succeeded' END
        WHEN count(*) FILTER (WHERE status IN ('running', 'succeeded', 'dead', 'cancelled')
                              OR attempts > 0 OR started_at IS NOT NULL) > 0 THEN 'running'
        ELSE 'queued' END AS status
    FROM operations WHERE operations.job_id = k.id
    HAVING count(*) > 0) AS s
WHERE jobs.id = k.id AND jobs.status <> s.status
  AND jobs.id = ANY(%(ids)b::text[]);  -- the job rows by key, whatever the table's size

-- name: mark_jobs_running
-- The status test is written `(...) IS TRUE` so it stays a filter: the rows are found by
-- their key, never by a scan of a status index chosen on stale statistics (after a
-- burst arrives in an idle table, that scan reads every waiting row: ~40 ms at 30k; an
-- outcome batch planned as a scan of every running row, joined to the batch in a nested
-- loop, took 30-80 ms for 256 outcomes instead of 8).
UPDATE jobs SET status = 'running'
WHERE id = ANY(%(ids)b::text[]) AND (status = 'queued') IS TRUE;

-- name: _ready_head
-- The head of the ready order of one queue (the query of CTE `c` in claim_head and
-- claim_candidates): up to %(limit)s operations that are due, skipping rows other
-- claimers hold and keys with an open earlier (or a running) operation, in priority then
-- submission order, each locked.
    SELECT o.seq, o.key FROM operations o
    WHERE o.queue = %(queue)s
      AND o.status IN ('scheduled', 'queued', 'retrying')
      AND o.run_at <= now()
      AND (o.key IS NULL OR NOT EXISTS (
            SELECT 1 FROM operations p
            WHERE p.queue = o.queue AND p.key = o.key AND p.seq <> o.seq
              AND p.status IN ('scheduled', 'queued', 'retrying', 'running')
              AND (p.status = 'running' OR p.seq < o.seq)))
    ORDER BY o.priority DESC, o.seq
    LIMIT %(limit)s
    FOR UPDATE OF o SKIP LOCKED

-- name: claim_head
-- A claim in one statement (so one transaction and one round trip) for the usual head of
-- a queue: when no claimable operation in it has a key, lease them all and mark their
-- jobs running. Row locks are all such operations need: FOR UPDATE SKIP LOCKED hands each
-- row to one claimer and checks its status again on the row's latest version. When one
-- of them has a key, lease nothing and answer `keyed`: the caller claims the queue with
-- claim_candidates and claim_update, whose key locks and second snapshot keep the key's
-- order. Always answers at least one row: the leased ones, or one of NULLs.
WITH c AS MATERIALIZED (  -- claim_candidates' head, before its key locks
    -- include: _ready_head
    ),
head AS MATERIALIZED (SELECT EXISTS (SELECT 1 FROM c WHERE c.key IS NOT NULL) AS keyed),
leased AS (
    UPDATE operations o
    SET status = 'running', attempts = o.attempts + 1, lease_token = o.lease_token + 1,
        worker_id = %(worker_id)s, started_at = clock_timestamp(),
        lease_expires_at = clock_timestamp() + make_interval(secs => %(lease_s)s)
    WHERE o.seq = ANY(ARRAY(SELECT seq FROM c))  -- by key: see mark_jobs_running
      AND NOT (SELECT keyed FROM head)
    RETURNING o.id, o.job_id, o.queue, o.task, o.args, o.key, o.attempts, o.max_attempts,
              o.timeout_s, o.lease_token, o.created_at, o.headers, o.priority, o.seq),
running AS (  -- mark_jobs_running's rows, found by key the same way
    UPDATE jobs SET status = 'running'
    WHERE id = ANY(ARRAY(SELECT job_id FROM leased)) AND (status = 'queued') IS TRUE)
SELECT l.*, h.keyed FROM head h LEFT JOIN leased l ON true;

-- name: claim_candidates
-- Step 1 of a claim: the head of the ready order of one queue, skipping rows other
-- claimers hold and keys with an open earlier (or a running) operation, then the key
-- lock of each keyed candidate (a transaction advisory lock; a held one skips the key).
WITH c AS MATERIALIZED (
    -- include: _ready_head
    )
SELECT seq FROM c
WHERE c.key IS NULL
   OR pg_try_advisory_xact_lock(hashtextextended(%(queue)s || '/' || c.key, 0));

-- name: claim_update
-- Step 2, a new statement (so a new snapshot, taken after the key locks were granted):
-- check per-key order again, now against every claim committed before, and lease.
-- started_at is the statement's clock, not the transaction's start: an earlier
-- operation of the key may have finished between step 1 and this snapshot.
UPDATE operations o
SET status = 'running', attempts = o.attempts + 1, lease_token = o.lease_token + 1,
    worker_id = %(worker_id)s, started_at = clock_timestamp(),
    lease_expires_at = clock_timestamp() + make_interval(secs => %(lease_s)s)
WHERE o.seq = ANY(%(seqs)b::bigint[])
  AND (o.status IN ('scheduled', 'queued', 'retrying')) IS TRUE  -- see mark_jobs_running
  AND o.run_at <= now()
  AND (o.key IS NULL OR NOT EXISTS (
        SELECT 1 FROM operations p
        WHERE p.queue = o.queue AND p.key = o.key AND p.seq <> o.seq
          AND p.status IN ('scheduled', 'queued', 'retrying', 'running')
          AND (p.status = 'running' OR p.seq < o.seq)))
RETURNING id, job_id, queue, task, args, key, attempts, max_attempts, timeout_s,
          lease_token, created_at, headers, priority, seq;

-- name: claim_ids
WITH wanted AS MATERIALIZED (
    SELECT seq FROM operations
    WHERE id = ANY(%(ids)b::text[])
      AND (status IN ('scheduled', 'queued', 'retrying')) IS TRUE  -- see mark_jobs_running
      AND run_at <= now()
    FOR UPDATE SKIP LOCKED)
UPDATE operations o
SET status = 'running', attempts = o.attempts + 1, lease_token = o.lease_token + 1,
    worker_id = %(worker_id)s, started_at = now(),
    lease_expires_at = now() + make_interval(secs => %(lease_s)s)
FROM wanted
WHERE o.seq = wanted.seq
RETURNING o.id, o.job_id, o.queue, o.task, o.args, o.key, o.attempts, o.max_attempts,
          o.timeout_s, o.lease_token, o.created_at, o.headers, o.priority, o.seq;

-- name: extend_leases
-- Fenced: only leases still held (same token, still running) are extended and returned.
-- Rows are looked up by id one batch entry at a time (see complete_many).
WITH l AS MATERIALIZED (
    SELECT found.seq, l.lease_token
    FROM unnest(%(op_ids)b::text[], %(tokens)b::bigint[]) AS l(op_id, lease_token)
    CROSS JOIN LATERAL (SELECT seq FROM operations WHERE id = l.op_id OFFSET 0) AS found)
UPDATE operations o SET lease_expires_at = now() + make_interval(secs => %(lease_s)s)
FROM l
WHERE o.seq = l.seq AND o.lease_token = l.lease_token
  AND (o.status = 'running') IS TRUE  -- see mark_jobs_running
RETURNING o.id, o.lease_token, o.cancel_requested;

-- name: _ended_totals
-- Included by the statements that end operations, after their CTE `done` (one row per
-- operation changed, with its tenant, queue and new status): those that ended
-- (succeeded, dead, cancelled) are added to the running totals (`counted`) and to the
-- finishes of the current 5-second slot (`recent`), under this connection's shard.
counted AS (  -- the running totals of ended operations (006_op_totals.sql)
    INSERT INTO op_totals AS t (tenant, queue, status, shard, n)
    SELECT tenant, queue, status, pg_backend_pid(), count(*) FROM done
    WHERE status IN ('succeeded', 'dead', 'cancelled')
    GROUP BY tenant, queue, status ORDER BY tenant, queue, status
    ON CONFLICT (tenant, queue, status, shard) DO UPDATE SET n = t.n + excluded.n),
recent AS (  -- finishes per 5-second slot, for the rates (007_op_recent.sql)
    INSERT INTO op_recent AS r (tenant, queue, slot, shard, finished, failed)
    SELECT tenant, queue, conveyor_slot(now()), pg_backend_pid(), count(*),
           count(*) FILTER (WHERE status = 'dead') FROM done
    WHERE status IN ('succeeded', 'dead', 'cancelled')
    GROUP BY tenant, queue ORDER BY tenant, queue
    ON CONFLICT (tenant, queue, slot, shard) DO UPDATE
    SET finished = r.finished + excluded.finished, failed = r.failed + excluded.failed)

-- name: complete_many
-- Every outcome of a batch in one fenced statement: a row changes only while its lease
-- (same token, still running) is held. A retry of an operation whose job was cancelled
-- meanwhile ends it cancelled. Returns the outcomes that were recorded.
-- The batch finds its rows by id, one entry at a time (OFFSET 0 keeps the lookup a
-- subquery per entry), then updates them by seq. Joined directly, the planner may
-- scan the table for "running" rows it believes are almost none (statistics taken
-- while nothing ran) and, for each, scan the whole batch: 30-80 ms for 256 outcomes.
-- The outcomes that end operations are added to the running totals.
-- In the same statement: a job of one operation ends as its operation did (the map
-- `single` from model.job_status of one status; nothing to derive or lock first, as the
-- status follows from the outcome written under the operation's lease alone, and a
-- concurrent derivation, by a cancel, waits for this row and computes the same); and a
-- finished keyed operation or a retry notifies its queue, since the key's next
-- operation may now be ready (delivered at commit).
-- With `single_only`, the batch is recorded only if each of its operations is its job's
-- only one, so the statement can be a transaction of its own; otherwise nothing changes
-- and one row of NULLs answers `multi`: the caller runs it again without `single_only`
-- in a transaction that derives the other jobs' statuses (refresh_job_status).
-- The answer always has a row: the recorded outcomes, or one of NULLs.
-- The batch's arrays come through `p`, which the planner does not look into: every plan
-- takes a batch as a few rows, so the plan made once for any batch (generic) costs what
-- one made for this batch does, and PostgreSQL keeps it. Seen as constants, a batch of
-- one made each prepared run plan again (0.5 ms of server CPU per batch, more than
-- running it, when outcomes come one at a time).
WITH p AS MATERIALIZED (
    SELECT %(op_ids)b::text[] AS op_ids, %(tokens)b::bigint[] AS tokens,
           %(kinds)b::text[] AS kinds, %(results)b::text[] AS results,
           %(errors)b::text[] AS errors, %(retry_in_s)b::float8[] AS retry_in_s),
v AS MATERIALIZED (
    SELECT found.seq, found.job_ops, v.*
    FROM p CROSS JOIN LATERAL unnest(p.op_ids, p.tokens, p.kinds, p.results, p.errors,
                                     p.retry_in_s)
         AS v(op_id, lease_token, kind, result, error, retry_in_s)
    CROSS JOIN LATERAL (SELECT seq, job_ops FROM operations WHERE id = v.op_id OFFSET 0)
         AS found),
batch AS MATERIALIZED (
    SELECT %(single_only)s AND EXISTS (SELECT 1 FROM v WHERE v.job_ops <> 1) AS multi),
done AS (
UPDATE operations o
SET status = CASE WHEN v.kind <> 'retry' THEN v.kind
                  WHEN o.cancel_requested THEN 'cancelled' ELSE 'retrying' END,
    result = CASE WHEN v.kind = 'succeeded' THEN v.result::jsonb ELSE o.result END,
    error = CASE WHEN v.kind = 'succeeded' THEN NULL ELSE v.error::jsonb END,
    finished_at = CASE WHEN v.kind = 'retry' AND NOT o.cancel_requested THEN NULL
                       ELSE now() END,
    run_at = CASE WHEN v.kind = 'retry' THEN now() + make_interval(secs => v.retry_in_s)
                  ELSE o.run_at END,
    lease_expires_at = NULL
FROM v
WHERE o.seq = v.seq AND o.lease_token = v.lease_token
  AND (o.status = 'running') IS TRUE  -- see mark_jobs_running
  AND NOT (SELECT multi FROM batch)
RETURNING o.id, v.lease_token, o.job_id, o.queue, o.key, v.kind, o.status, o.job_ops,
          o.tenant),
ended AS (
    UPDATE jobs SET status = single.job_status
    FROM done
    JOIN unnest(%(single_op)s::text[], %(single_job)s::text[]) AS single(op_status, job_status)
      ON single.op_status = done.status
    WHERE jobs.id = done.job_id  -- each by key (not `= ANY` of them all, in a loop)
      AND done.job_ops = 1 AND jobs.status <> single.job_status),
notified AS (
    SELECT count(pg_notify('conveyor_ready', q.queue)) AS n
    FROM (SELECT DISTINCT queue FROM done WHERE key IS NOT NULL OR kind = 'retry') AS q),
-- include: _ended_totals
SELECT d.id, d.lease_token, d.job_id, d.queue, d.key, d.kind, d.status, d.job_ops, b.multi
FROM batch b CROSS JOIN notified LEFT JOIN done d ON true;

-- name: release
-- Give a lease back without counting the attempt (a cancelled one ends cancelled, and
-- is added to the running totals).
WITH done AS (
UPDATE operations
SET status = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'queued' END,
    finished_at = CASE WHEN cancel_requested THEN now() END,
    attempts = attempts - 1, run_at = now(), worker_id = NULL, lease_expires_at = NULL
WHERE id = %(op_id)s AND lease_token = %(lease_token)s
  AND (status = 'running') IS TRUE  -- see mark_jobs_running
RETURNING job_id, queue, status, tenant),
-- include: _ended_totals
SELECT job_id, queue FROM done;

-- name: rescue_expired
-- Leases that expired: run again, or dead once attempts are spent (cancelled if asked).
-- SKIP LOCKED: concurrent rescuers (and outcomes being recorded) never wait on each other.
-- The ones that end are added to the running totals.
WITH expired AS MATERIALIZED (
    SELECT seq FROM operations
    WHERE status = 'running' AND lease_expires_at < now()
    ORDER BY lease_expires_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED),
done AS (
UPDATE operations o
SET status = CASE WHEN o.cancel_requested THEN 'cancelled'
                  WHEN o.attempts >= o.max_attempts THEN 'dead'
                  ELSE 'queued' END,
    error = CASE WHEN NOT o.cancel_requested AND o.attempts >= o.max_attempts
                 THEN jsonb_build_object('type', 'LeaseExpired', 'message',
                      'the worker holding the lease stopped responding (attempt '
                      || o.attempts || ')', 'traceback', NULL)
                 ELSE o.error END,
    finished_at = CASE WHEN o.cancel_requested OR o.attempts >= o.max_attempts
                       THEN now() END,
    run_at = now(), worker_id = NULL, lease_expires_at = NULL
FROM expired
WHERE o.seq = expired.seq AND o.status = 'running' AND o.lease_expires_at < now()
RETURNING o.id, o.job_id, o.queue, o.status, o.tenant),
-- include: _ended_totals
SELECT id, job_id, queue FROM done;

-- name: cancel_waiting
-- Added to the running totals of ended operations.
WITH done AS (
UPDATE operations SET status = 'cancelled', finished_at = now()
WHERE job_id = ANY(%(ids)s::text[]) AND status IN ('scheduled', 'queued', 'retrying')
RETURNING queue, status, tenant),
-- include: _ended_totals
SELECT queue FROM done;

-- name: cancel_running
UPDATE operations SET cancel_requested = true
WHERE job_id = ANY(%(ids)s::text[]) AND (status = 'running') IS TRUE;  -- see mark_jobs_running

-- name: replay
-- Taken off the running totals of ended operations.
WITH done AS (
UPDATE operations
SET status = 'queued', attempts = 0, run_at = now(), result = NULL, error = NULL,
    started_at = NULL, finished_at = NULL, worker_id = NULL, cancel_requested = false
WHERE status = 'dead'
  AND (%(tenant)s::text IS NULL OR tenant = %(tenant)s::text)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
  AND (%(task)s::text IS NULL OR task = %(task)s::text)
  AND (%(job_id)s::text IS NULL OR job_id = %(job_id)s::text)
  AND (%(ids)s::text[] IS NULL OR id = ANY(%(ids)s::text[]))
RETURNING id, job_id, queue, 'dead' AS status, tenant),
counted AS (  -- the running totals of ended operations (006_op_totals.sql)
    INSERT INTO op_totals AS t (tenant, queue, status, shard, n)
    SELECT tenant, queue, status, pg_backend_pid(), -count(*) FROM done
    GROUP BY tenant, queue, status ORDER BY tenant, queue, status
    ON CONFLICT (tenant, queue, status, shard) DO UPDATE SET n = t.n + excluded.n)
SELECT id, job_id, queue FROM done;

-- name: ready_depths
-- Queued operations per queue, each counted up to %(cap)s. The queues are found by
-- skipping through the ready index (one probe per queue) and each count reads at most
-- %(cap)s of its entries: never a scan of the table (backpressure runs this every
-- second; stats_counts took 120-200 ms at 110k operations).
WITH RECURSIVE queues(queue) AS (
    (SELECT queue FROM operations
     WHERE status IN ('scheduled', 'queued', 'retrying') ORDER BY queue LIMIT 1)
    UNION ALL
    SELECT (SELECT o.queue FROM operations o
            WHERE o.status IN ('scheduled', 'queued', 'retrying') AND o.queue > queues.queue
            ORDER BY o.queue LIMIT 1)
    FROM queues WHERE queues.queue IS NOT NULL)
SELECT queue, (SELECT count(*) FROM (
                  SELECT 1 FROM operations o
                  WHERE o.queue = queues.queue AND o.status = 'queued'
                  ORDER BY o.priority DESC, o.seq  -- the ready index's order: read in it
                  LIMIT %(cap)s) AS capped) AS depth
FROM queues WHERE queue IS NOT NULL;

-- name: stats_counts
-- Running operations counted from their rows, through the partial index that holds them
-- (as many as are running); the ended ones from their running totals (006_op_totals.sql),
-- not from every row ever stored. The waiting ones: stats_waiting.
SELECT queue, status, count(*) AS n FROM operations
WHERE status = 'running' AND (%(tenant)s::text IS NULL OR tenant = %(tenant)s::text)
GROUP BY queue, status
UNION ALL
SELECT queue, status, sum(n) FROM op_totals
WHERE (%(tenant)s::text IS NULL OR tenant = %(tenant)s::text)
GROUP BY queue, status
HAVING sum(n) <> 0;

-- name: fold_op_totals
-- The running totals of connections that closed, folded into shard 0 (each connection
-- adds to its own rows: 006_op_totals.sql). Concurrent folds take turns on the rows.
WITH gone AS (
    DELETE FROM op_totals t
    WHERE shard <> 0
      AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = t.shard)
    RETURNING tenant, queue, status, n)
INSERT INTO op_totals AS t (tenant, queue, status, shard, n)
SELECT tenant, queue, status, 0, sum(n) FROM gone
GROUP BY tenant, queue, status ORDER BY tenant, queue, status
ON CONFLICT (tenant, queue, status, shard) DO UPDATE SET n = t.n + excluded.n;

-- name: stats_waiting
-- Waiting operations per queue, counted by state, with the age of the oldest due one:
-- one read of the ready index in its own order (as many entries as the backlog), which
-- the aggregate takes as it comes. Asked for the counts and the oldest apart, the
-- planner scanned the whole table whenever its statistics were taken with a burst just
-- loaded (every row waiting), until autovacuum analyzed the table again: 20-28 ms each
-- after a drain of 100,000 operations, 0.6-4.5 ms this way. With a backlog of 200,000
-- it takes 50-63 ms, against 36-38 ms for the counts alone before.
SELECT queue,
       count(*) FILTER (WHERE status = 'scheduled') AS scheduled,
       count(*) FILTER (WHERE status = 'queued') AS queued,
       count(*) FILTER (WHERE status = 'retrying') AS retrying,
       extract(epoch FROM now() - min(run_at) FILTER (WHERE run_at <= now()))::float8
           AS age_s
FROM (SELECT queue, status, run_at FROM operations
      WHERE status IN ('scheduled', 'queued', 'retrying')
        AND (%(tenant)s::text IS NULL OR tenant = %(tenant)s::text)
      ORDER BY queue, priority DESC, seq) AS waiting
GROUP BY queue;

-- name: stats_recent
-- Finishes of the last minute (slots_1m slots up to the current one) and five minutes
-- (slots_5m), from the counts per slot (007_op_recent.sql; the windows are
-- conveyor/store/recent.py's): at most slots_5m rows per queue and connection, whatever
-- the throughput.
SELECT queue,
       coalesce(sum(finished) FILTER (
           WHERE slot > conveyor_slot(now()) - %(slots_1m)s::bigint), 0) AS last_1m,
       sum(finished) AS last_5m,
       sum(failed) AS failed_5m
FROM op_recent
WHERE slot > conveyor_slot(now()) - %(slots_5m)s::bigint
  AND (%(tenant)s::text IS NULL OR tenant = %(tenant)s::text)
GROUP BY queue;

-- name: prune_op_recent
-- Slots out of the five minutes read (007_op_recent.sql); with fold_op_totals.
DELETE FROM op_recent WHERE slot <= conveyor_slot(now()) - %(slots_5m)s::bigint;

-- name: upsert_task
INSERT INTO tasks (name, queue, schema, kind, max_attempts, timeout_s, priority, doc, updated_at)
VALUES (%(name)s, %(queue)s, %(schema)s::jsonb, %(kind)s, %(max_attempts)s, %(timeout_s)s,
        %(priority)s, %(doc)s, now())
ON CONFLICT (name) DO UPDATE SET
    queue = excluded.queue, schema = excluded.schema, kind = excluded.kind,
    max_attempts = excluded.max_attempts, timeout_s = excluded.timeout_s,
    priority = excluded.priority, doc = excluded.doc, updated_at = excluded.updated_at;

-- name: list_tasks
SELECT * FROM tasks ORDER BY name;

-- name: upsert_worker
INSERT INTO workers (id, host, pid, queues, concurrency, version, config_hash, started_at,
                     last_seen_at, in_flight, processed, status)
VALUES (%(id)s, %(host)s, %(pid)s, %(queues)s::jsonb, %(concurrency)s, %(version)s,
        %(config_hash)s, to_timestamp(%(started_at)s), clock_timestamp(), %(in_flight)s,
        %(processed)s, %(status)s)
ON CONFLICT (id) DO UPDATE SET
    queues = excluded.queues, concurrency = excluded.concurrency,
    version = excluded.version, config_hash = excluded.config_hash,
    last_seen_at = excluded.last_seen_at, in_flight = excluded.in_flight,
    processed = excluded.processed, status = excluded.status;

-- name: list_workers
SELECT * FROM workers WHERE (%(include_gone)s OR status = 'live') ORDER BY id;

-- name: expire_workers
-- Live workers silent for timeout_s become gone; gone ones silent for forget_after_s are
-- deleted (disjoint rows: one statement, one round trip every rescue interval).
WITH forgotten AS (
    DELETE FROM workers
    WHERE status = 'gone' AND last_seen_at < now() - make_interval(secs => %(forget_after_s)s))
UPDATE workers SET status = 'gone'
WHERE status = 'live' AND last_seen_at < now() - make_interval(secs => %(timeout_s)s)
RETURNING id;

-- name: expire_leases_of_workers
-- The leases of gone workers expire now, so the rescuer re-queues their work at once.
UPDATE operations SET lease_expires_at = now() - interval '1 millisecond'
WHERE status = 'running' AND worker_id = ANY(%(ids)b::text[]);
