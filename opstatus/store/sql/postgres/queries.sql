-- PostgreSQL-only blocks: row locks, SKIP LOCKED claims, arrays, advisory locks.

-- name: exec_claim
-- The oldest queued executions of a target, and the lock of their operations, in one
-- statement (PostgresStore._locking; SQLite reads the operations apart): each claimed
-- execution with its operation's lease and row (op). The operations are locked in id
-- order after every claimed execution, as every writer takes them. Planned once per
-- session: the function opstatus_claim (migration 0014) holds the statement.
SELECT (c.execution).*, (c.operation).timeout_lease AS lease, c.operation AS op
FROM opstatus_claim($1, $2, $3, $4) c

-- name: exclusive_lock
SELECT pg_advisory_xact_lock(hashtextextended($1 || '/' || $2, 0))

-- name: exclusive_busy
SELECT DISTINCT e.target_id FROM executions e JOIN operations o ON o.id = e.operation_id
WHERE e.tenant_id = $1 AND o.kind = $2 AND o.exclusive AND e.target_id = ANY($3::text[])
  AND e.state IN ('scheduled', 'queued', 'dispatched', 'acknowledged', 'in_progress')

-- name: op_targets
SELECT operation_id, target_id FROM executions
WHERE tenant_id = $1 AND operation_id = ANY($2::text[]) ORDER BY operation_id, target_id

-- name: exec_lock_many
-- the executions of a batch of reports locked in id order, then their operations in id
-- order, in one statement (PostgresStore._locking): each execution with its operation's
-- row (op); planned once per session (opstatus_lock_many, migration 0014)
SELECT (l.execution).*, l.operation AS op FROM opstatus_lock_many($1, $2) l

-- name: exec_inbox
-- common.sql's exec_inbox planned once per session (opstatus_inbox, migration 0014)
SELECT (i.execution).*, i.operation_kind, i.operation_parameters, i.queued
FROM opstatus_inbox($1, $2) i

-- name: migrations_lock
SELECT pg_advisory_xact_lock(7277001)

-- name: filter_ids
AND o.id = ANY({p}::text[])

-- name: filter_states
AND o.state = ANY({p}::text[])

-- name: filter_targets
-- o is the tenant's already and its executions are its tenant's: (operation_id,
-- target_id) alone answers from the executions_operation index, no heap visit.
AND EXISTS (SELECT 1 FROM executions e WHERE e.operation_id = o.id
            AND e.target_id = ANY({p}::text[]))

-- name: filter_groups
AND o.groups ?| {p}::text[]

-- name: filter_kinds
AND o.kind = ANY({p}::text[])

-- name: filter_internal
AND o.internal = {p}

-- name: exec_filter_operations
AND e.operation_id = ANY({p}::text[])

-- name: exec_filter_targets
AND e.target_id = ANY({p}::text[])

-- name: exec_filter_states
AND e.state = ANY({p}::text[])

-- name: key_revoked
-- sent inside the revoking transaction, so every process learns of it at commit
SELECT pg_notify('opstatus', $1)

-- name: events_append
-- The events of a write transaction (one array per column), and the new operation
-- to number ($2, or NULL): numbered and inserted while the transaction commits
-- (migration 0008's deferred trigger), under the tenant row lock held only then.
INSERT INTO event_appends (tenant_id, numbering, types, operation_ids, execution_ids,
                           target_ids, states, progresses, datas, created_ats)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)

-- name: state_write
-- A write transaction's folded changes in one statement (pgflush): its operations ($2),
-- its executions ($3) and its events ($4), each an array of objects keyed by column
-- (op_update's, exec_update's and events_append's), where the shared flow sends a
-- statement per table and the events apart; planned once per session
-- (opstatus_state_write, migration 0014). Every row it updates is locked already.
SELECT opstatus_state_write($1, $2::jsonb, $3::jsonb, $4::jsonb)

-- name: lock_rows
-- (a fragment) the rows read stay this transaction's until it ends
FOR UPDATE

-- name: tenant_is
-- (a fragment) "tenant_id = $1" that no index serves: IS NOT DISTINCT FROM (tenant_id is
-- NOT NULL, so it means "="). A lookup by id then has the primary key as its only index:
-- on tables never analyzed (a new database until autovacuum reaches it) "=" made every
-- index on (tenant_id, ...) cost the same as the key, and the planner scanned the
-- tenant's rows with one (test_pg_plans)
IS NOT DISTINCT FROM

-- name: lock_rows_skip_locked
-- (a fragment) replicas each take rows no other has taken (sweeps, purges)
FOR UPDATE SKIP LOCKED

-- name: subquery_fence
-- (a fragment) a subquery with an OFFSET is planned on its own, not pulled up into its query
OFFSET 0

-- name: target_merge
-- a target that exists keeps its creation time; labels merge key by key, a NULL name keeps it
UPDATE targets SET name = COALESCE($3, name), labels = labels || $4::jsonb
WHERE tenant_id = $1 AND id = $2
RETURNING tenant_id, id, name, labels, created_at

-- name: targets_known
SELECT id FROM targets WHERE tenant_id = $1 AND id = ANY($2::text[])

-- name: op_create
-- Creates in one statement, so they commit by themselves and together, with no BEGIN or
-- COMMIT round trip and one WAL flush for all (PostgresStore._create, a batch of the
-- creates that arrived while the previous batch ran). Each create's operation row
-- ($1-$29, one array per column, in op_insert's order), the targets it names (create
-- index and target: $30, $31), the executions of all (one array per column: $32-$49;
-- empty for a fan-out that COPYs them after) and each create's event ($50-$57, one per
-- create; numbered as the statement commits, by event_appends' trigger). A create is
-- inserted only when its checks pass: every target registered, the tenant there, its
-- idempotency key unused. One answer row per create, in order, says which failed.
-- JSON documents travel as text (cast to jsonb there): asyncpg would take a JSON array
-- inside an array parameter for another dimension of the array. Planned once per
-- session: the function opstatus_create (migration 0015) holds the statement.
SELECT c.tenant_found AS tenant, c.unknown_targets AS unknown,
       c.prior_operation AS prior_id, c.prior_request_hash AS prior_hash
FROM opstatus_create($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15,
    $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $30, $31,
    $32, $33, $34, $35, $36, $37, $38, $39, $40, $41, $42, $43, $44, $45, $46, $47,
    $48, $49, $50, $51, $52, $53, $54, $55, $56, $57) c

-- name: op_numbers
-- the numbers of operations created together (op_create), numbered as they committed;
-- planned once per session (opstatus_numbers, migration 0015)
SELECT n.operation_id AS id, n.operation_number AS number FROM opstatus_numbers($1, $2) n

