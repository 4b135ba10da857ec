-- opstatus schema 4: webhook subscriptions and their delivery log (docs/architecture.md, Webhooks).
-- Unlike API keys, the signing secret is stored as is: signing each delivery needs
-- the secret itself, so a hash would not do (every webhook provider keeps it so).
CREATE TABLE webhooks (
    id               text PRIMARY KEY,
    tenant_id        text NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    url              text NOT NULL,
    events           jsonb NOT NULL,             -- event type patterns
    secret           text NOT NULL,
    created_at       timestamptz NOT NULL,
    cursor_seq       bigint NOT NULL,            -- last event seq delivered, dead or skipped
    attempts         integer NOT NULL DEFAULT 0, -- failed attempts at the next event
    next_attempt_at  timestamptz,                -- when the next event is tried again
    delivery_seq     bigint NOT NULL DEFAULT 0,  -- last delivery number handed out
    lease_owner      text,                       -- the worker delivering it right now
    lease_expires_at timestamptz
);
CREATE INDEX webhooks_tenant ON webhooks (tenant_id, id);

CREATE TABLE webhook_deliveries (
    webhook_id      text NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    number          bigint NOT NULL,
    tenant_id       text NOT NULL,
    seq             bigint NOT NULL,
    type            text NOT NULL,
    attempt         integer NOT NULL,
    status          text NOT NULL,
    status_code     integer,
    error           text,
    replay_of       bigint,
    next_attempt_at timestamptz,
    created_at      timestamptz NOT NULL,
    delivered_at    timestamptz,
    PRIMARY KEY (webhook_id, number)
);
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (webhook_id, number)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_created ON webhook_deliveries (created_at);
