-- Conveyor schema, version 1 (SQLite).
-- Times are Unix seconds (REAL). JSON columns hold text produced by json.dumps.

CREATE TABLE IF NOT EXISTS jobs (
    id              TEXT PRIMARY KEY,
    tenant          TEXT NOT NULL,
    queue           TEXT NOT NULL,
    status          TEXT NOT NULL,
    metadata        TEXT NOT NULL,
    headers         TEXT NOT NULL,
    idempotency_key TEXT,
    request_hash    TEXT,
    created_at      REAL NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_idempotency ON jobs (tenant, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_tenant ON jobs (tenant, id);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, id);

CREATE TABLE IF NOT EXISTS operations (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,  -- submission order
    id               TEXT NOT NULL UNIQUE,
    job_id           TEXT NOT NULL REFERENCES jobs (id),
    tenant           TEXT NOT NULL,
    queue            TEXT NOT NULL,
    task             TEXT NOT NULL,
    args             TEXT NOT NULL,
    key              TEXT,
    priority         INTEGER NOT NULL,
    status           TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL,
    timeout_s        REAL,
    result           TEXT,
    error            TEXT,
    created_at       REAL NOT NULL,
    run_at           REAL NOT NULL,
    started_at       REAL,
    finished_at      REAL,
    worker_id        TEXT,
    lease_token      INTEGER NOT NULL DEFAULT 0,
    lease_expires_at REAL,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    headers          TEXT NOT NULL DEFAULT '{}'
);
-- Ready work, in claim order.
CREATE INDEX IF NOT EXISTS operations_ready ON operations (queue, priority DESC, seq)
    WHERE status IN ('scheduled', 'queued', 'retrying');
-- Open operations per key, for the per-key order check.
CREATE INDEX IF NOT EXISTS operations_key ON operations (queue, key, seq)
    WHERE key IS NOT NULL AND status IN ('scheduled', 'queued', 'retrying', 'running');
CREATE INDEX IF NOT EXISTS operations_leases ON operations (lease_expires_at)
    WHERE status = 'running';
CREATE INDEX IF NOT EXISTS operations_job ON operations (job_id);
CREATE INDEX IF NOT EXISTS operations_status ON operations (status, seq);
CREATE INDEX IF NOT EXISTS operations_finished ON operations (finished_at)
    WHERE finished_at IS NOT NULL;

CREATE TABLE IF NOT EXISTS tasks (
    name         TEXT PRIMARY KEY,
    queue        TEXT NOT NULL,
    schema       TEXT NOT NULL,
    kind         TEXT NOT NULL,
    max_attempts INTEGER NOT NULL,
    timeout_s    REAL,
    priority     INTEGER NOT NULL,
    doc          TEXT NOT NULL,
    updated_at   REAL NOT NULL
);
