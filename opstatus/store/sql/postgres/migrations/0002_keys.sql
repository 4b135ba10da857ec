-- opstatus schema 2: API keys and short-lived bearer tokens (hashes only, never secrets).
CREATE TABLE api_keys (
    id          text PRIMARY KEY,
    tenant_id   text NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name        text NOT NULL,
    role        text NOT NULL,
    targets     jsonb NOT NULL,
    secret_hash text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL,
    revoked_at  timestamptz
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id, id);

CREATE TABLE tokens (
    token_hash  text PRIMARY KEY,
    key_id      text NOT NULL REFERENCES api_keys(id) ON DELETE CASCADE,
    expires_at  timestamptz NOT NULL
);
CREATE INDEX tokens_key ON tokens (key_id, expires_at);
