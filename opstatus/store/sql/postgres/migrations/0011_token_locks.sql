-- opstatus schema 11 (SQLite: its migration 9): named per-tenant locks held by a bearer token (the Oracle SBC
-- configuration lock, docs/dialects.md). A lock lives while its token does: rows
-- whose token expired or whose key was revoked are dead and replaced on the next take.
CREATE TABLE token_locks (
    tenant_id   text NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name        text NOT NULL,
    token_hash  text NOT NULL,
    taken_at    timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, name)
);
