-- Conveyor schema, version 2 (SQLite): the worker registry.

CREATE TABLE IF NOT EXISTS workers (
    id           TEXT PRIMARY KEY,
    host         TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    queues       TEXT NOT NULL,  -- JSON array
    concurrency  INTEGER NOT NULL,
    version      TEXT NOT NULL,
    config_hash  TEXT NOT NULL,
    started_at   REAL NOT NULL,
    last_seen_at REAL NOT NULL,
    in_flight    INTEGER NOT NULL,
    processed    INTEGER NOT NULL,
    status       TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS workers_live ON workers (status, last_seen_at);
CREATE INDEX IF NOT EXISTS operations_worker ON operations (worker_id) WHERE status = 'running';
