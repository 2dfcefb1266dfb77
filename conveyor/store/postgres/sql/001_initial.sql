-- Conveyor schema, version 1 (PostgreSQL).
-- Times are timestamptz set from the database clock (now()); JSON columns are jsonb.
-- Applied by `conveyor migrate` inside one transaction holding an advisory lock.

CREATE TABLE jobs (
    id              text PRIMARY KEY,
    tenant          text NOT NULL,
    queue           text NOT NULL,
    status          text NOT NULL,
    metadata        jsonb NOT NULL,
    headers         jsonb NOT NULL,
    idempotency_key text,
    request_hash    text,
    created_at      timestamptz NOT NULL
);
CREATE UNIQUE INDEX jobs_idempotency ON jobs (tenant, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX jobs_tenant ON jobs (tenant, id);
CREATE INDEX jobs_status ON jobs (status, id);

CREATE TABLE operations (
    seq              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- submission order
    id               text NOT NULL UNIQUE,
    job_id           text NOT NULL REFERENCES jobs (id),
    tenant           text NOT NULL,
    queue            text NOT NULL,
    task             text NOT NULL,
    args             jsonb NOT NULL,
    key              text,
    priority         integer NOT NULL,
    status           text NOT NULL,
    attempts         integer NOT NULL DEFAULT 0,
    max_attempts     integer NOT NULL,
    timeout_s        double precision,
    result           jsonb,
    error            jsonb,
    created_at       timestamptz NOT NULL,
    run_at           timestamptz NOT NULL,
    started_at       timestamptz,
    finished_at      timestamptz,
    worker_id        text,
    lease_token      bigint NOT NULL DEFAULT 0,
    lease_expires_at timestamptz,
    cancel_requested boolean NOT NULL DEFAULT false,
    headers          jsonb NOT NULL DEFAULT '{}'
);
-- Ready work, in claim order.
CREATE INDEX operations_ready ON operations (queue, priority DESC, seq)
    WHERE status IN ('scheduled', 'queued', 'retrying');
-- Open operations per key, for the per-key order check.
CREATE INDEX operations_key ON operations (queue, key, seq)
    WHERE key IS NOT NULL AND status IN ('scheduled', 'queued', 'retrying', 'running');
CREATE INDEX operations_leases ON operations (lease_expires_at) WHERE status = 'running';
CREATE INDEX operations_worker ON operations (worker_id) WHERE status = 'running';
CREATE INDEX operations_job ON operations (job_id);
CREATE INDEX operations_status ON operations (status, seq);
CREATE INDEX operations_finished ON operations (finished_at) WHERE finished_at IS NOT NULL;

CREATE TABLE tasks (
    name         text PRIMARY KEY,
    queue        text NOT NULL,
    schema       jsonb NOT NULL,
    kind         text NOT NULL,
    max_attempts integer NOT NULL,
    timeout_s    double precision,
    priority     integer NOT NULL,
    doc          text NOT NULL,
    updated_at   timestamptz NOT NULL
);

CREATE TABLE workers (
    id           text PRIMARY KEY,
    host         text NOT NULL,
    pid          integer NOT NULL,
    queues       jsonb NOT NULL,
    concurrency  integer NOT NULL,
    version      text NOT NULL,
    config_hash  text NOT NULL,
    started_at   timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL,
    in_flight    integer NOT NULL,
    processed    bigint NOT NULL,
    status       text NOT NULL
);
CREATE INDEX workers_live ON workers (status, last_seen_at);
