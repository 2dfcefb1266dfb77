-- Conveyor schema, version 3 (SQLite): API keys. Only a hash of each key is stored.

CREATE TABLE IF NOT EXISTS api_keys (
    id         TEXT PRIMARY KEY,       -- the visible part of the key (cvk_<id>_...)
    tenant     TEXT NOT NULL,
    scopes     TEXT NOT NULL,          -- comma-separated: read, submit, admin
    key_hash   TEXT NOT NULL,          -- hex SHA-256 of the whole key
    name       TEXT NOT NULL,
    created_at REAL NOT NULL,
    revoked_at REAL
);
CREATE INDEX IF NOT EXISTS api_keys_tenant ON api_keys (tenant, created_at);
