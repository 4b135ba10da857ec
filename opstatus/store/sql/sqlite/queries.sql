-- SQLite-only blocks. Every write runs inside BEGIN IMMEDIATE on the one writer
-- connection, so plain SELECTs already hold the database's write lock.

-- name: exec_claim
SELECT e.*, o.timeout_lease AS lease FROM executions e
JOIN operations o ON o.id = e.operation_id
WHERE e.tenant_id = $1 AND e.target_id = $2 AND e.state = 'queued'
  AND NOT EXISTS (
        SELECT 1 FROM operations c WHERE c.id = e.operation_id AND c.max_per_minute IS NOT NULL
        AND c.max_per_minute <= (SELECT count(*) FROM executions d
                                 WHERE d.operation_id = c.id AND d.started_at > $4))
ORDER BY e.queued_at, e.id LIMIT $3

-- name: exclusive_lock
SELECT $1, $2

-- name: exclusive_busy
SELECT DISTINCT e.target_id FROM executions e JOIN operations o ON o.id = e.operation_id
WHERE e.tenant_id = $1 AND o.kind = $2 AND o.exclusive
  AND e.target_id IN (SELECT value FROM json_each($3))
  AND e.state IN ('scheduled', 'queued', 'dispatched', 'acknowledged', 'in_progress')

-- name: op_targets
SELECT operation_id, target_id FROM executions
WHERE tenant_id = $1 AND operation_id IN (SELECT value FROM json_each($2))
ORDER BY operation_id, target_id

-- name: exec_lock_many
-- the executions of a batch of reports, locked in id order (then their operations)
SELECT * FROM executions
WHERE tenant_id = $1 AND id IN (SELECT value FROM json_each($2)) ORDER BY id /*:lock_rows*/

-- name: migrations_lock
SELECT 1

-- name: filter_ids
AND o.id IN (SELECT value FROM json_each({p}))

-- name: filter_states
AND o.state IN (SELECT value FROM json_each({p}))

-- name: filter_targets
-- o is the tenant's already and its executions are its tenant's: (operation_id,
-- target_id) alone answers from the executions_operation index, no row visit.
AND EXISTS (SELECT 1 FROM executions e WHERE e.operation_id = o.id
            AND e.target_id IN (SELECT value FROM json_each({p})))

-- name: filter_groups
AND EXISTS (SELECT 1 FROM json_each(o.groups) g WHERE g.value IN (SELECT value FROM json_each({p})))

-- name: filter_kinds
AND o.kind IN (SELECT value FROM json_each({p}))

-- name: filter_internal
AND o.internal = {p}

-- name: exec_filter_operations
AND e.operation_id IN (SELECT value FROM json_each({p}))

-- name: exec_filter_targets
AND e.target_id IN (SELECT value FROM json_each({p}))

-- name: exec_filter_states
AND e.state IN (SELECT value FROM json_each({p}))

-- name: lock_rows
-- (a fragment) the write transaction holds the database's write lock already

-- name: tenant_is
-- (a fragment) the tenant of a lookup by id: the planner takes the primary key as it is
=

-- name: lock_rows_skip_locked
-- (a fragment) one writer at a time: nothing to skip

-- name: subquery_fence
-- (a fragment) a subquery with an OFFSET is planned on its own, not flattened into its query
LIMIT -1 OFFSET 0

-- name: target_merge
-- a target that exists keeps its creation time; labels merge key by key, a NULL name keeps it
UPDATE targets SET name = COALESCE($3, name), labels = json_patch(labels, $4)
WHERE tenant_id = $1 AND id = $2
RETURNING tenant_id, id, name, labels, created_at

-- name: targets_known
SELECT id FROM targets WHERE tenant_id = $1 AND id IN (SELECT value FROM json_each($2))

-- name: op_lock_many
-- the operations of a claim (the write transaction holds the database's write lock)
SELECT * FROM operations WHERE tenant_id = $1 AND id IN (SELECT value FROM json_each($2))
ORDER BY id
