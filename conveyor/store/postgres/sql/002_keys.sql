-- Conveyor schema, version 2 (PostgreSQL): API keys. Only a hash of each key is stored.

CREATE TABLE api_keys (
    id         text PRIMARY KEY,        -- the visible part of the key (cvk_<id>_...)
    tenant     text NOT NULL,
    scopes     text NOT NULL,           -- comma-separated: read, submit, admin
    key_hash   text NOT NULL,           -- hex SHA-256 of the whole key
    name       text NOT NULL,
    created_at timestamptz NOT NULL,
    revoked_at timestamptz
);
CREATE INDEX api_keys_tenant ON api_keys (tenant, created_at);
