-- Named statements of the SQLite store for API keys. Parameters are :named.

-- name: insert_key
INSERT INTO api_keys (id, tenant, scopes, key_hash, name, created_at)
VALUES (:id, :tenant, :scopes, :key_hash, :name, :now);

-- name: get_keys
SELECT * FROM api_keys WHERE id IN (SELECT value FROM json_each(:ids));

-- name: list_keys
SELECT * FROM api_keys WHERE (:tenant IS NULL OR tenant = :tenant) ORDER BY created_at, id;

-- name: revoke_keys
UPDATE api_keys SET revoked_at = COALESCE(revoked_at, :now)
WHERE id IN (SELECT value FROM json_each(:ids))
RETURNING id;
