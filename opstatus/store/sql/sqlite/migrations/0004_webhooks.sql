-- opstatus schema 4: webhook subscriptions and their delivery log (docs/architecture.md, Webhooks).
-- Unlike API keys, the signing secret is stored as is: signing each delivery needs
-- the secret itself, so a hash would not do (every webhook provider keeps it so).
CREATE TABLE webhooks (
    id               text PRIMARY KEY,
    tenant_id        text NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    url              text NOT NULL,
    events           text NOT NULL,             -- event type patterns
    secret           text NOT NULL,
    created_at       real NOT NULL,
    cursor_seq       integer NOT NULL,          -- last event seq delivered, dead or skipped
    attempts         integer NOT NULL DEFAULT 0, -- failed attempts at the next event
    next_attempt_at  real,                      -- when the next event is tried again
    delivery_seq     integer NOT NULL DEFAULT 0, -- last delivery number handed out
    lease_owner      text,                      -- the worker delivering it right now
    lease_expires_at real
);
CREATE INDEX webhooks_tenant ON webhooks (tenant_id, id);

CREATE TABLE webhook_deliveries (
    webhook_id      text NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    number          integer NOT NULL,
    tenant_id       text NOT NULL,
    seq             integer NOT NULL,
    type            text NOT NULL,
    attempt         integer NOT NULL,
    status          text NOT NULL,
    status_code     integer,
    error           text,
    replay_of       integer,
    next_attempt_at real,
    created_at      real NOT NULL,
    delivered_at    real,
    PRIMARY KEY (webhook_id, number)
);
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (webhook_id, number)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_created ON webhook_deliveries (created_at);
