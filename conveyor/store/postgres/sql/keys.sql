-- Named statements of the PostgreSQL store for API keys. Parameters are %(named)s.

-- name: insert_key
INSERT INTO api_keys (id, tenant, scopes, key_hash, name, created_at)
VALUES (%(id)s, %(tenant)s, %(scopes)s, %(key_hash)s, %(name)s, clock_timestamp());

-- name: get_keys
SELECT * FROM api_keys WHERE id = ANY(%(ids)s::text[]);

-- name: list_keys
SELECT * FROM api_keys
WHERE (%(tenant)s::text IS NULL OR tenant = %(tenant)s::text)
ORDER BY created_at, id;

-- name: revoke_keys
UPDATE api_keys SET revoked_at = COALESCE(revoked_at, clock_timestamp())
WHERE id = ANY(%(ids)s::text[])
RETURNING id;
