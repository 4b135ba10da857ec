-- opstatus schema 5: executions of deleted or purged operations answer Gone, not Not Found.
CREATE TABLE execution_tombstones (
    tenant_id    text NOT NULL,
    execution_id text NOT NULL,
    operation_id text NOT NULL,
    PRIMARY KEY (tenant_id, execution_id)
);
