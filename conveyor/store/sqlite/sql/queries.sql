-- Named statements of the SQLite store. Parameters are :named, but for the *_rows
-- statements' positional ones.

-- name: schema_version
SELECT version FROM schema_version;

-- name: insert_job
INSERT INTO jobs (id, tenant, queue, status, metadata, headers, idempotency_key,
                  request_hash, created_at)
VALUES (:id, :tenant, :queue, 'queued', :metadata, :headers, :idempotency_key,
        :request_hash, :now)
ON CONFLICT DO NOTHING;

-- name: find_idempotent
SELECT id, request_hash FROM jobs WHERE tenant = :tenant AND idempotency_key = :idempotency_key;

-- name: insert_operation
INSERT INTO operations (id, job_id, tenant, queue, task, args, key, priority, status,
                        max_attempts, timeout_s, created_at, run_at, headers, job_ops)
VALUES (:id, :job_id, :tenant, :queue, :task, :args, :key, :priority, :status,
        :max_attempts, :timeout_s, :now, :run_at, :headers, :job_ops);

-- name: insert_jobs_rows
-- Jobs without idempotency keys, all new, several to a statement: the row below is
-- repeated once per job (core.insert_rows), its parameters positional. Fewer statements
-- for a batch than one per row (each run of a statement hands Python's GIL from the
-- writer thread to the event loop and back), and no JSON for SQLite to parse per column.
INSERT INTO jobs (id, tenant, queue, status, metadata, headers, request_hash, created_at)
VALUES (?, ?, ?, 'queued', ?, ?, ?, ?);

-- name: insert_operations_rows
-- The operations of insert_jobs_rows, in submission order (the rows' order gives seq).
INSERT INTO operations (id, job_id, tenant, queue, task, args, key, priority, status,
                        max_attempts, timeout_s, created_at, run_at, headers, job_ops)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?);

-- name: select_jobs
SELECT * FROM jobs
WHERE id IN (SELECT value FROM json_each(:ids))
  AND (:tenant IS NULL OR tenant = :tenant);

-- name: list_jobs
SELECT * FROM jobs
WHERE (:tenant IS NULL OR tenant = :tenant)
  AND (:status IS NULL OR status = :status)
  AND (:queue IS NULL OR queue = :queue)
  AND (:after IS NULL OR id < :after)
  AND (:task IS NULL OR EXISTS (SELECT 1 FROM operations o
                                WHERE o.job_id = jobs.id AND o.task = :task))
ORDER BY id DESC
LIMIT :limit;

-- name: operations_of_jobs
SELECT * FROM operations
WHERE job_id IN (SELECT value FROM json_each(:ids))
ORDER BY seq;

-- name: list_operations
SELECT * FROM operations
WHERE (:tenant IS NULL OR tenant = :tenant)
  AND (:status IS NULL OR status = :status)
  AND (:queue IS NULL OR queue = :queue)
  AND (:task IS NULL OR task = :task)
  AND (:job_id IS NULL OR job_id = :job_id)
  AND (:ids IS NULL OR id IN (SELECT value FROM json_each(:ids)))
  AND seq > :after_seq
ORDER BY seq
LIMIT :limit;

-- name: refresh_job_status
-- Derive each job's status from its operations (same rule as model.job_status).
UPDATE jobs SET status = (
    SELECT CASE
        WHEN SUM(o.status NOT IN ('succeeded', 'dead', 'cancelled')) = 0 THEN
            CASE WHEN SUM(o.status = 'dead') > 0 THEN 'failed'
                 WHEN SUM(o.status = 'cancelled') > 0 THEN 'cancelled'
                 ELSE 'succeeded' END
        WHEN SUM(o.status IN ('running', 'succeeded', 'dead', 'cancelled')
                 OR o.attempts > 0 OR o.started_at IS NOT NULL) > 0 THEN 'running'
        ELSE 'queued' END
    FROM operations o WHERE o.job_id = jobs.id)
WHERE id IN (SELECT value FROM json_each(:ids));

-- name: end_single_jobs
-- A job of one operation ends as its operation did (rows.JOB_STATUS_OF_SINGLE): nothing
-- to derive. :jobs is a JSON array of [job_id, status].
UPDATE jobs SET status = v.value ->> 1
FROM json_each(:jobs) AS v
WHERE jobs.id = v.value ->> 0;

-- name: mark_jobs_running
UPDATE jobs SET status = 'running'
WHERE id IN (SELECT value FROM json_each(:ids)) AND status = 'queued';

-- name: claim
-- Lease ready operations of one queue: due, by priority then submission order, skipping
-- any whose key has a running operation or an earlier waiting one. Walks the
-- operations_ready index in claim order, so its cost does not grow with the backlog.
UPDATE operations
SET status = 'running', attempts = attempts + 1, lease_token = lease_token + 1,
    worker_id = :worker_id, started_at = :now, lease_expires_at = :now + :lease_s
WHERE seq IN (
    SELECT o.seq FROM operations o INDEXED BY operations_ready
    WHERE o.queue = :queue
      AND o.status IN ('scheduled', 'queued', 'retrying')
      AND o.run_at <= :now
      AND (o.key IS NULL OR NOT EXISTS (
            SELECT 1 FROM operations p
            WHERE p.queue = o.queue AND p.key = o.key AND p.seq <> o.seq
              AND p.status IN ('scheduled', 'queued', 'retrying', 'running')
              AND (p.status = 'running' OR p.seq < o.seq)))
    ORDER BY o.priority DESC, o.seq
    LIMIT :limit)
RETURNING id, job_id, queue, task, args, key, attempts, max_attempts, timeout_s,
          lease_token, created_at, headers, priority, seq;

-- name: claim_ids
UPDATE operations
SET status = 'running', attempts = attempts + 1, lease_token = lease_token + 1,
    worker_id = :worker_id, started_at = :now, lease_expires_at = :now + :lease_s
WHERE id IN (SELECT value FROM json_each(:ids))
  AND status IN ('scheduled', 'queued', 'retrying') AND run_at <= :now
RETURNING id, job_id, queue, task, args, key, attempts, max_attempts, timeout_s,
          lease_token, created_at, headers, priority, seq;

-- name: extend_lease
UPDATE operations SET lease_expires_at = :now + :lease_s
WHERE id = :op_id AND lease_token = :lease_token AND status = 'running'
RETURNING cancel_requested;

-- name: complete_many
-- Record a batch of outcomes in one statement. :batch is a JSON array of
-- [op_id, lease_token, kind, result_json, error_json, retry_in_s]; each row changes only
-- if its lease is current (fencing). A retry of an operation whose job was cancelled
-- meanwhile ends it cancelled. The batch drives the join (unary + keeps the planner off
-- the status index), so the cost is one id lookup per outcome.
UPDATE operations AS o
SET status = CASE b.kind WHEN 'retry' THEN
                 CASE WHEN o.cancel_requested = 1 THEN 'cancelled' ELSE 'retrying' END
             ELSE b.kind END,
    result = CASE b.kind WHEN 'succeeded' THEN b.result ELSE o.result END,
    error = b.error,
    finished_at = CASE WHEN b.kind <> 'retry' OR o.cancel_requested = 1 THEN :now END,
    run_at = CASE b.kind WHEN 'retry' THEN :now + b.retry_in_s ELSE o.run_at END,
    lease_expires_at = NULL
FROM (SELECT value ->> 0 AS op_id, value ->> 1 AS lease_token, value ->> 2 AS kind,
             value ->> 3 AS result, value ->> 4 AS error, value ->> 5 AS retry_in_s
      FROM json_each(:batch)) AS b
WHERE o.id = b.op_id AND +o.lease_token = b.lease_token AND +o.status = 'running'
RETURNING id, job_id, tenant, queue, status, job_ops;

-- name: release
-- Give a lease back without counting the attempt (a cancelled one ends cancelled).
UPDATE operations
SET status = CASE WHEN cancel_requested = 1 THEN 'cancelled' ELSE 'queued' END,
    finished_at = CASE WHEN cancel_requested = 1 THEN :now END,
    attempts = attempts - 1, run_at = :now, worker_id = NULL, lease_expires_at = NULL
WHERE id = :op_id AND lease_token = :lease_token AND status = 'running'
RETURNING job_id, tenant, queue, status;

-- name: rescue_expired
-- Leases that expired: run again, or dead once attempts are spent (cancelled if asked).
UPDATE operations
SET status = CASE WHEN cancel_requested = 1 THEN 'cancelled'
                  WHEN attempts >= max_attempts THEN 'dead'
                  ELSE 'queued' END,
    error = CASE WHEN cancel_requested = 0 AND attempts >= max_attempts
                 THEN json_object('type', 'LeaseExpired', 'message',
                      'the worker holding the lease stopped responding (attempt '
                      || attempts || ')', 'traceback', NULL)
                 ELSE error END,
    finished_at = CASE WHEN cancel_requested = 1 OR attempts >= max_attempts THEN :now END,
    run_at = :now, worker_id = NULL, lease_expires_at = NULL
WHERE seq IN (SELECT seq FROM operations
              WHERE status = 'running' AND lease_expires_at < :now
              LIMIT :limit)
RETURNING id, job_id, tenant, queue, status;

-- name: cancel_waiting
UPDATE operations SET status = 'cancelled', finished_at = :now
WHERE job_id IN (SELECT value FROM json_each(:ids))
  AND status IN ('scheduled', 'queued', 'retrying')
RETURNING tenant, queue, status;

-- name: cancel_running
UPDATE operations SET cancel_requested = 1
WHERE job_id IN (SELECT value FROM json_each(:ids)) AND status = 'running';

-- name: replay
UPDATE operations
SET status = 'queued', attempts = 0, run_at = :now, result = NULL, error = NULL,
    started_at = NULL, finished_at = NULL, worker_id = NULL, cancel_requested = 0
WHERE status = 'dead'
  AND (:tenant IS NULL OR tenant = :tenant)
  AND (:queue IS NULL OR queue = :queue)
  AND (:task IS NULL OR task = :task)
  AND (:job_id IS NULL OR job_id = :job_id)
  AND (:ids IS NULL OR id IN (SELECT value FROM json_each(:ids)))
RETURNING id, job_id, tenant, queue, 'dead' AS status;

-- name: ready_depths
-- Queued operations per queue, each counted up to :cap. The queues are found by skipping
-- through the ready index (one probe per queue) and each count reads at most :cap of its
-- entries: never a scan of the table (backpressure runs this every second).
WITH RECURSIVE queues(queue) AS (
    SELECT (SELECT queue FROM operations INDEXED BY operations_ready
            WHERE status IN ('scheduled', 'queued', 'retrying') ORDER BY queue LIMIT 1)
    UNION ALL
    SELECT (SELECT o.queue FROM operations o INDEXED BY operations_ready
            WHERE o.status IN ('scheduled', 'queued', 'retrying') AND o.queue > queues.queue
            ORDER BY o.queue LIMIT 1)
    FROM queues WHERE queues.queue IS NOT NULL)
SELECT queue, (SELECT count(*) FROM (
                  SELECT 1 FROM operations o INDEXED BY operations_ready
                  WHERE o.queue = queues.queue
                    AND o.status IN ('scheduled', 'queued', 'retrying')
                    AND o.status = 'queued'
                  LIMIT :cap)) AS depth
FROM queues WHERE queue IS NOT NULL;

-- name: add_op_totals
-- Running totals of ended operations (004_op_totals.sql): :n ended, or left (negative).
INSERT INTO op_totals (tenant, queue, status, n) VALUES (:tenant, :queue, :status, :n)
ON CONFLICT (tenant, queue, status) DO UPDATE SET n = n + excluded.n;

-- name: add_op_recent
-- Finishes per slot (006_op_recent.sql): :finished more in :slot, :failed of them dead.
INSERT INTO op_recent (tenant, queue, slot, finished, failed)
VALUES (:tenant, :queue, :slot, :finished, :failed)
ON CONFLICT (tenant, queue, slot) DO UPDATE
SET finished = finished + excluded.finished, failed = failed + excluded.failed;

-- name: stats_counts
-- Waiting and running operations counted from their rows, through the partial indexes
-- that hold them (as many as the backlog); the ended ones from their running totals
-- (004_op_totals.sql), not from every row ever.
SELECT queue, status, COUNT(*) AS n FROM operations INDEXED BY operations_ready
WHERE status IN ('scheduled', 'queued', 'retrying')
  AND (:tenant IS NULL OR tenant = :tenant)
GROUP BY queue, status
UNION ALL
SELECT queue, status, COUNT(*) AS n FROM operations INDEXED BY operations_leases
WHERE status = 'running' AND (:tenant IS NULL OR tenant = :tenant)
GROUP BY queue, status
UNION ALL
SELECT queue, status, SUM(n) FROM op_totals
WHERE (:tenant IS NULL OR tenant = :tenant)
GROUP BY queue, status
HAVING SUM(n) > 0;

-- name: stats_oldest_ready
SELECT queue, MIN(run_at) AS oldest FROM operations INDEXED BY operations_ready
WHERE status IN ('scheduled', 'queued', 'retrying') AND run_at <= :now
  AND (:tenant IS NULL OR tenant = :tenant)
GROUP BY queue;

-- name: stats_recent
-- Finishes of the last minute (:slots_1m slots up to :slot) and five minutes
-- (:slots_5m), from the counts per slot (006_op_recent.sql; the windows are
-- conveyor/store/recent.py's): at most :slots_5m rows per tenant and queue, whatever
-- the throughput.
SELECT queue,
       SUM(CASE WHEN slot > :slot - :slots_1m THEN finished ELSE 0 END) AS last_1m,
       SUM(finished) AS last_5m,
       SUM(failed) AS failed_5m
FROM op_recent
WHERE slot > :slot - :slots_5m AND (:tenant IS NULL OR tenant = :tenant)
GROUP BY queue;

-- name: prune_op_recent
-- Slots out of the five minutes read (006_op_recent.sql).
DELETE FROM op_recent WHERE slot <= :slot - :slots_5m;

-- name: upsert_task
INSERT INTO tasks (name, queue, schema, kind, max_attempts, timeout_s, priority, doc, updated_at)
VALUES (:name, :queue, :schema, :kind, :max_attempts, :timeout_s, :priority, :doc, :now)
ON CONFLICT (name) DO UPDATE SET
    queue = excluded.queue, schema = excluded.schema, kind = excluded.kind,
    max_attempts = excluded.max_attempts, timeout_s = excluded.timeout_s,
    priority = excluded.priority, doc = excluded.doc, updated_at = excluded.updated_at;

-- name: list_tasks
SELECT * FROM tasks ORDER BY name;

-- name: upsert_worker
INSERT INTO workers (id, host, pid, queues, concurrency, version, config_hash, started_at,
                     last_seen_at, in_flight, processed, status)
VALUES (:id, :host, :pid, :queues, :concurrency, :version, :config_hash, :started_at, :now,
        :in_flight, :processed, :status)
ON CONFLICT (id) DO UPDATE SET
    queues = excluded.queues, concurrency = excluded.concurrency,
    version = excluded.version, config_hash = excluded.config_hash,
    last_seen_at = excluded.last_seen_at, in_flight = excluded.in_flight,
    processed = excluded.processed, status = excluded.status;

-- name: list_workers
SELECT * FROM workers WHERE (:include_gone OR status = 'live') ORDER BY id;

-- name: forget_gone_workers
DELETE FROM workers WHERE status = 'gone' AND last_seen_at < :now - :forget_after_s;

-- name: expire_workers
UPDATE workers SET status = 'gone'
WHERE status = 'live' AND last_seen_at < :now - :timeout_s
RETURNING id;

-- name: expire_leases_of_workers
-- The leases of gone workers expire now, so the rescuer re-queues their work at once.
UPDATE operations SET lease_expires_at = :now - 0.001
WHERE status = 'running' AND worker_id IN (SELECT value FROM json_each(:ids));
