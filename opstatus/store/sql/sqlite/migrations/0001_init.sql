-- opstatus schema 1: tenants, targets, groups, operations, executions, the event outbox, tombstones.
CREATE TABLE tenants (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    created_at  real NOT NULL,
    op_seq      integer NOT NULL DEFAULT 0,   -- last operation number handed out
    event_seq   integer NOT NULL DEFAULT 0    -- last event seq handed out (commit order)
);

CREATE TABLE targets (
    tenant_id   text NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    id          text NOT NULL,
    name        text NOT NULL,
    labels      text NOT NULL DEFAULT '{}',
    created_at  real NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE groups (
    tenant_id   text NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    id          text NOT NULL,
    name        text NOT NULL,
    created_at  real NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE group_members (
    tenant_id   text NOT NULL,
    group_id    text NOT NULL,
    target_id   text NOT NULL,
    position    integer NOT NULL,
    PRIMARY KEY (tenant_id, group_id, target_id),
    FOREIGN KEY (tenant_id, group_id) REFERENCES groups (tenant_id, id) ON DELETE CASCADE
);

CREATE TABLE operations (
    id              text PRIMARY KEY,
    tenant_id       text NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    number          integer,              -- set by the creating transaction's last statement
    kind            text NOT NULL,
    parameters      text NOT NULL,
    internal        integer NOT NULL,
    groups          text NOT NULL,
    schedule_at     real,
    timeout_queue   real,
    timeout_lease   real NOT NULL,
    timeout_run     real,
    retries         integer NOT NULL,
    exclusive       integer NOT NULL,
    idempotency_key text,
    request_hash    text,
    state           text NOT NULL,
    counts          text NOT NULL,
    progress_sum    real NOT NULL,
    total           integer NOT NULL,
    eta             real,
    error           text,
    result          text,
    created_at      real NOT NULL,
    started_at      real,
    updated_at      real NOT NULL,
    completed_at    real,
    version         integer NOT NULL
);
CREATE UNIQUE INDEX operations_number ON operations (tenant_id, number);
CREATE UNIQUE INDEX operations_idempotency ON operations (tenant_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX operations_state ON operations (tenant_id, state, number);
CREATE INDEX operations_kind ON operations (tenant_id, kind, number);
CREATE INDEX operations_created ON operations (tenant_id, created_at);

CREATE TABLE executions (
    id               text PRIMARY KEY,
    tenant_id        text NOT NULL,
    operation_id     text NOT NULL REFERENCES operations(id) ON DELETE CASCADE,
    target_id        text NOT NULL,
    state            text NOT NULL,
    progress         real NOT NULL,
    eta              real,
    details          text NOT NULL,
    error            text,
    result           text,
    attempt          integer NOT NULL,
    version          integer NOT NULL,
    queued_at        real,
    started_at       real,
    updated_at       real NOT NULL,
    finished_at      real,
    lease_expires_at real
);
CREATE INDEX executions_operation ON executions (operation_id, target_id);
CREATE INDEX executions_target ON executions (tenant_id, target_id, operation_id);
CREATE INDEX executions_inbox ON executions (tenant_id, target_id, queued_at, id)
    WHERE state = 'queued';
CREATE INDEX executions_held ON executions (tenant_id, target_id) WHERE state = 'dispatched';

-- The transactional outbox: written in the same transaction as every change.
CREATE TABLE events (
    tenant_id    text NOT NULL,
    seq          integer NOT NULL,
    type         text NOT NULL,
    operation_id text NOT NULL,
    execution_id text,
    target_id    text,
    state        text NOT NULL,
    progress     real NOT NULL,
    data         text NOT NULL,
    created_at   real NOT NULL,
    PRIMARY KEY (tenant_id, seq)
);
CREATE INDEX events_operation ON events (tenant_id, operation_id, seq);

CREATE TABLE tombstones (
    tenant_id    text NOT NULL,
    operation_id text NOT NULL,
    number       integer,
    reason       text NOT NULL,
    purged_at    real NOT NULL,
    PRIMARY KEY (tenant_id, operation_id)
);
CREATE INDEX tombstones_number ON tombstones (tenant_id, number);
