-- PostgreSQL-only blocks: row locks, SKIP LOCKED claims, arrays, advisory locks.

-- name: exec_claim
SELECT e.*, o.timeout_lease AS lease FROM executions e
JOIN operations o ON o.id = e.operation_id
WHERE e.id IN (
    SELECT id FROM executions
    WHERE tenant_id = $1 AND target_id = $2 AND state = 'queued'
      AND NOT EXISTS (
        SELECT 1 FROM operations c WHERE c.id = executions.operation_id AND c.max_per_minute IS NOT NULL
        AND c.max_per_minute <= (SELECT count(*) FROM executions d
                                 WHERE d.operation_id = c.id AND d.started_at > $4))
    ORDER BY queued_at, id LIMIT $3
    FOR UPDATE SKIP LOCKED)
ORDER BY e.queued_at, e.id

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
-- the executions of a batch of reports, locked in id order (then their operations)
SELECT id, operation_id FROM executions
WHERE tenant_id = $1 AND id = ANY($2::text[]) ORDER BY id /*:lock_rows*/

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

-- name: lock_rows
-- (a fragment) the rows read stay this transaction's until it ends
FOR UPDATE

-- name: lock_rows_skip_locked
-- (a fragment) replicas each take rows no other has taken (sweeps, purges)
FOR UPDATE SKIP LOCKED

-- name: target_merge
-- a target that exists keeps its creation time; labels merge key by key, a NULL name keeps it
UPDATE targets SET name = COALESCE($3, name), labels = labels || $4::jsonb
WHERE tenant_id = $1 AND id = $2
RETURNING tenant_id, id, name, labels, created_at

-- name: targets_known
SELECT id FROM targets WHERE tenant_id = $1 AND id = ANY($2::text[])

-- name: op_create
-- A create in one statement, so it commits by itself with no BEGIN/COMMIT round trips
-- (PostgresStore._create): the unknown-target, tenant and idempotency checks, then the
-- operation, its executions (one array per column, $33-$50: empty for a fan-out that
-- COPYs them after) and its event (event_appends: numbered as it commits, $51-$59),
-- inserted only when every check passed. The answer says which check failed.
WITH tenant AS (SELECT id FROM tenants WHERE id = $1),
unknown AS (
    SELECT coalesce(array_agg(t ORDER BY t), '{}') AS ids FROM unnest($2::text[]) AS t
    WHERE NOT EXISTS (SELECT 1 FROM targets WHERE tenant_id = $1 AND id = t)),
prior AS (SELECT id, request_hash FROM operations WHERE tenant_id = $1 AND idempotency_key = $3),
go AS (SELECT 1 FROM tenant WHERE NOT EXISTS (SELECT 1 FROM prior)
       AND cardinality((SELECT ids FROM unknown)) = 0),
op AS (
    INSERT INTO operations (
        id, tenant_id, number, kind, parameters, internal, groups, schedule_at,
        timeout_queue, timeout_lease, timeout_run, retries, exclusive, idempotency_key,
        request_hash, state, counts, progress_sum, total, eta, error, result,
        created_at, started_at, updated_at, completed_at, version, max_per_minute,
        abort_after_failures, timeout_heartbeat)
    SELECT $4::text, $5::text, NULL, $6::text, $7::jsonb, $8::boolean, $9::jsonb,
           $10::timestamptz, $11::float8, $12::float8, $13::float8, $14::integer, $15::boolean,
           $16::text, $17::text, $18::text, $19::jsonb, $20::float8, $21::integer,
           $22::timestamptz, $23::text, $24::jsonb, $25::timestamptz, $26::timestamptz,
           $27::timestamptz, $28::timestamptz, $29::bigint, $30::integer, $31::integer,
           $32::float8
    FROM go
    RETURNING id),
executions_made AS (
    INSERT INTO executions (
        id, tenant_id, operation_id, target_id, state, progress, eta, details, error, result,
        attempt, version, queued_at, started_at, updated_at, finished_at, lease_expires_at,
        due_at)
    SELECT e.* FROM op, unnest($33::text[], $34::text[], $35::text[], $36::text[],
                               $37::text[], $38::float8[], $39::timestamptz[], $40::jsonb[],
                               $41::text[], $42::jsonb[], $43::integer[], $44::bigint[],
                               $45::timestamptz[], $46::timestamptz[], $47::timestamptz[],
                               $48::timestamptz[], $49::timestamptz[], $50::timestamptz[]) AS e),
appended AS (
    INSERT INTO event_appends (tenant_id, numbering, types, operation_ids, execution_ids,
                               target_ids, states, progresses, datas, created_ats)
    SELECT $1, $51::text, $52::text[], $53::text[], $54::text[], $55::text[], $56::text[],
           $57::float8[], $58::jsonb[], $59::timestamptz[] FROM op)
SELECT EXISTS (SELECT 1 FROM tenant) AS tenant, (SELECT ids FROM unknown) AS unknown,
       (SELECT id FROM prior) AS prior_id, (SELECT request_hash FROM prior) AS prior_hash,
       EXISTS (SELECT 1 FROM op) AS created

-- name: op_lock_many
-- the operations of a claim, locked in id order (the order every writer locks them in)
SELECT * FROM operations WHERE tenant_id = $1 AND id = ANY($2::text[]) ORDER BY id FOR UPDATE
