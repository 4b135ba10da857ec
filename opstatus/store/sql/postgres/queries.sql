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
-- JSON documents travel as text (cast to jsonb here): asyncpg would take a JSON array
-- inside an array parameter for another dimension of the array.
WITH input AS (
    SELECT * FROM unnest(
        $1::text[], $2::text[], $3::text[], $4::text[], $5::boolean[], $6::text[],
        $7::timestamptz[], $8::float8[], $9::float8[], $10::float8[], $11::integer[],
        $12::boolean[], $13::text[], $14::text[], $15::text[], $16::text[], $17::float8[],
        $18::integer[], $19::timestamptz[], $20::text[], $21::text[], $22::timestamptz[],
        $23::timestamptz[], $24::timestamptz[], $25::timestamptz[], $26::bigint[],
        $27::integer[], $28::integer[], $29::float8[])
    WITH ORDINALITY AS i(
        id, tenant_id, kind, parameters, internal, groups, schedule_at, timeout_queue,
        timeout_lease, timeout_run, retries, exclusive, idempotency_key, request_hash, state,
        counts, progress_sum, total, eta, error, result, created_at, started_at, updated_at,
        completed_at, version, max_per_minute, abort_after_failures, timeout_heartbeat, k)),
unknown AS (
    SELECT w.k, array_agg(w.target ORDER BY w.target) AS ids
    FROM unnest($30::bigint[], $31::text[]) AS w(k, target) JOIN input i ON i.k = w.k
    WHERE NOT EXISTS (SELECT 1 FROM targets t WHERE t.tenant_id = i.tenant_id AND t.id = w.target)
    GROUP BY w.k),
prior AS (
    SELECT i.k, o.id, o.request_hash FROM input i
    JOIN operations o ON o.tenant_id = i.tenant_id AND o.idempotency_key = i.idempotency_key),
go AS (
    SELECT i.* FROM input i
    WHERE EXISTS (SELECT 1 FROM tenants WHERE id = i.tenant_id)
      AND NOT EXISTS (SELECT 1 FROM prior p WHERE p.k = i.k)
      AND NOT EXISTS (SELECT 1 FROM unknown u WHERE u.k = i.k)),
op AS (
    INSERT INTO operations (
        id, tenant_id, number, kind, parameters, internal, groups, schedule_at,
        timeout_queue, timeout_lease, timeout_run, retries, exclusive, idempotency_key,
        request_hash, state, counts, progress_sum, total, eta, error, result,
        created_at, started_at, updated_at, completed_at, version, max_per_minute,
        abort_after_failures, timeout_heartbeat)
    SELECT id, tenant_id, NULL, kind, parameters::jsonb, internal, groups::jsonb, schedule_at,
           timeout_queue, timeout_lease, timeout_run, retries, exclusive, idempotency_key,
           request_hash, state, counts::jsonb, progress_sum, total, eta, error, result::jsonb,
           created_at, started_at, updated_at, completed_at, version, max_per_minute,
           abort_after_failures, timeout_heartbeat
    FROM go ORDER BY k
    RETURNING id),
executions_made AS (
    INSERT INTO executions (
        id, tenant_id, operation_id, target_id, state, progress, eta, details, error, result,
        attempt, version, queued_at, started_at, updated_at, finished_at, lease_expires_at,
        due_at)
    SELECT e.id, e.tenant_id, e.operation_id, e.target_id, e.state, e.progress, e.eta,
           e.details::jsonb, e.error, e.result::jsonb, e.attempt, e.version, e.queued_at,
           e.started_at, e.updated_at, e.finished_at, e.lease_expires_at, e.due_at
    FROM unnest(
        $32::text[], $33::text[], $34::text[], $35::text[], $36::text[], $37::float8[],
        $38::timestamptz[], $39::text[], $40::text[], $41::text[], $42::integer[],
        $43::bigint[], $44::timestamptz[], $45::timestamptz[], $46::timestamptz[],
        $47::timestamptz[], $48::timestamptz[], $49::timestamptz[])
        AS e(id, tenant_id, operation_id, target_id, state, progress, eta, details, error,
             result, attempt, version, queued_at, started_at, updated_at, finished_at,
             lease_expires_at, due_at)
    WHERE e.operation_id IN (SELECT id FROM op)),
appended AS (
    INSERT INTO event_appends (tenant_id, numbering, types, operation_ids, execution_ids,
                               target_ids, states, progresses, datas, created_ats)
    SELECT go.tenant_id, go.id, ARRAY[v.type], ARRAY[v.operation_id], ARRAY[v.execution_id],
           ARRAY[v.target_id], ARRAY[v.state], ARRAY[v.progress], ARRAY[v.data::jsonb],
           ARRAY[v.created_at]
    FROM go JOIN unnest($50::text[], $51::text[], $52::text[], $53::text[], $54::text[],
                        $55::float8[], $56::text[], $57::timestamptz[])
                 WITH ORDINALITY AS v(type, operation_id, execution_id, target_id, state,
                                      progress, data, created_at, k) ON v.k = go.k
    WHERE go.id IN (SELECT id FROM op)
    ORDER BY go.k)
SELECT EXISTS (SELECT 1 FROM tenants WHERE id = i.tenant_id) AS tenant,
       coalesce(u.ids, '{}') AS unknown, p.id AS prior_id, p.request_hash AS prior_hash
FROM input i LEFT JOIN unknown u ON u.k = i.k LEFT JOIN prior p ON p.k = i.k
ORDER BY i.k

-- name: op_numbers
-- the numbers of operations created together (op_create), numbered as they committed
SELECT o.id, o.number FROM operations o
JOIN unnest($1::text[], $2::text[]) AS w(tenant_id, id) ON o.tenant_id = w.tenant_id AND o.id = w.id

