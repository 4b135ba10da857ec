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
