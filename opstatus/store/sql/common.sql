-- Queries both adapters run as written. Parameters are $1, $2, … (the SQLite
-- adapter rewrites them to ?1, ?2, …). A dialect file may override any block.
-- A row looked up by id has its tenant compared with /*:tenant_is*/ (the dialect's
-- fragment): on PostgreSQL it keeps every other index out of the lookup.

-- name: tenant_insert
INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3)

-- name: tenant_get
SELECT id, name, created_at FROM tenants WHERE id = $1

-- name: tenant_bump
UPDATE tenants SET op_seq = op_seq + $2, event_seq = event_seq + $3
WHERE id = $1 RETURNING op_seq, event_seq

-- name: target_insert
INSERT INTO targets (tenant_id, id, name, labels, created_at) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (tenant_id, id) DO NOTHING
RETURNING tenant_id, id, name, labels, created_at

-- name: target_insert_missing
INSERT INTO targets (tenant_id, id, name, labels, created_at) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (tenant_id, id) DO NOTHING

-- name: target_get
SELECT tenant_id, id, name, labels, created_at FROM targets WHERE tenant_id = $1 AND id = $2

-- name: target_list
SELECT tenant_id, id, name, labels, created_at FROM targets
WHERE tenant_id = $1 AND id > $2 ORDER BY id LIMIT $3

-- name: group_upsert
INSERT INTO groups (tenant_id, id, name, created_at) VALUES ($1, $2, $3, $4)
ON CONFLICT (tenant_id, id) DO UPDATE SET name = excluded.name
RETURNING tenant_id, id, name, created_at

-- name: group_members_clear
DELETE FROM group_members WHERE tenant_id = $1 AND group_id = $2

-- name: group_member_insert
INSERT INTO group_members (tenant_id, group_id, target_id, position) VALUES ($1, $2, $3, $4)

-- name: group_get
SELECT tenant_id, id, name, created_at FROM groups WHERE tenant_id = $1 AND id = $2

-- name: group_members
SELECT target_id FROM group_members WHERE tenant_id = $1 AND group_id = $2 ORDER BY position

-- name: groups_of_target
SELECT group_id FROM group_members WHERE tenant_id = $1 AND target_id = $2 ORDER BY group_id

-- name: op_by_idempotency
SELECT id, request_hash FROM operations WHERE tenant_id = $1 AND idempotency_key = $2

-- name: op_insert
INSERT INTO operations (
    id, tenant_id, number, kind, parameters, internal, groups, schedule_at,
    timeout_queue, timeout_lease, timeout_run, retries, exclusive, idempotency_key,
    request_hash, state, counts, progress_sum, total, eta, error, result,
    created_at, started_at, updated_at, completed_at, version, max_per_minute,
    abort_after_failures, timeout_heartbeat)
VALUES ($1, $2, NULL, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
        $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29)

-- name: op_set_number
UPDATE operations SET number = $3 WHERE id = $2 AND tenant_id /*:tenant_is*/ $1

-- name: exec_insert
INSERT INTO executions (
    id, tenant_id, operation_id, target_id, state, progress, eta, details, error, result,
    attempt, version, queued_at, started_at, updated_at, finished_at, lease_expires_at, due_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)

-- name: event_insert
INSERT INTO events (tenant_id, seq, type, operation_id, execution_id, target_id, state,
                    progress, data, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)

-- name: op_get
SELECT * FROM operations WHERE id = $2 AND tenant_id /*:tenant_is*/ $1

-- name: op_number
SELECT number FROM operations WHERE id = $2 AND tenant_id /*:tenant_is*/ $1

-- name: op_by_number
SELECT * FROM operations WHERE tenant_id = $1 AND number = $2

-- name: op_latest
SELECT * FROM operations WHERE tenant_id = $1 AND number IS NOT NULL
ORDER BY number DESC LIMIT 1

-- name: op_update
UPDATE operations SET state = $3, counts = $4, progress_sum = $5, total = $6, eta = $7,
    error = $8, result = $9, started_at = $10, updated_at = $11, completed_at = $12,
    version = $13
WHERE id = $2 AND tenant_id /*:tenant_is*/ $1

-- name: op_list
SELECT * FROM operations o WHERE o.tenant_id = $1 AND o.number IS NOT NULL {filters}
ORDER BY o.number DESC LIMIT {limit} OFFSET {offset}

-- name: op_list_window
-- op_list's rows in op_list's order, for a creation-time window alone that lies further
-- back than it is wide (SqlStore.list_operations picks it): rather than walk
-- operations_number_created down from the newest number past every newer entry, the
-- window's numbers come from an index-only range scan of operations_created_number, the
-- page's numbers are sorted out of them and the page's rows read by operations_number.
-- The scan runs newest first, so the numbers arrive nearly in order and the bounded sort
-- keeps few; the fence fragment keeps the planner from turning it back into the walk.
SELECT op.* FROM (
    SELECT w.number FROM (
        SELECT o.number FROM operations o
        WHERE o.tenant_id = $1 AND o.number IS NOT NULL {filters}
        ORDER BY o.created_at DESC /*:subquery_fence*/
    ) AS w
    ORDER BY w.number DESC LIMIT {limit} OFFSET {offset}
) AS page
JOIN operations op ON op.tenant_id = $1 AND op.number = page.number
ORDER BY op.number DESC

-- name: exec_by_op
SELECT * FROM executions WHERE tenant_id = $1 AND operation_id = $2 ORDER BY target_id, id

-- name: exec_by_op_page
-- One page of an operation's executions by target, after target $3 (keyset on
-- executions_operation).
SELECT * FROM executions WHERE tenant_id = $1 AND operation_id = $2 AND target_id > $3
ORDER BY target_id, id LIMIT $4

-- name: exec_failing
SELECT * FROM executions
WHERE tenant_id = $1 AND operation_id = $2 AND state IN ('failed', 'timed_out')
ORDER BY target_id, id LIMIT $3

-- name: exec_get
SELECT * FROM executions WHERE id = $2 AND tenant_id /*:tenant_is*/ $1

-- name: exec_update
UPDATE executions SET state = $3, progress = $4, eta = $5, details = $6, error = $7,
    result = $8, attempt = $9, version = $10, queued_at = $11, started_at = $12,
    updated_at = $13, finished_at = $14, lease_expires_at = $15, due_at = $16
WHERE id = $2 AND tenant_id /*:tenant_is*/ $1

-- name: exec_held
SELECT * FROM executions WHERE tenant_id = $1 AND target_id = $2 AND state = 'dispatched'
ORDER BY queued_at, id

-- name: exec_inbox
-- exec_held with what to run (the operation's kind and parameters) and whether anything
-- is queued for the target, in one read (an inbox read): one row with a NULL id when
-- nothing is held
SELECT h.*, q.queued FROM (
    SELECT EXISTS (SELECT 1 FROM executions WHERE tenant_id = $1 AND target_id = $2
                   AND state = 'queued') AS queued) q
LEFT JOIN (
    SELECT e.*, o.kind AS operation_kind, o.parameters AS operation_parameters
    FROM executions e JOIN operations o ON o.id = e.operation_id
    WHERE e.tenant_id = $1 AND e.target_id = $2 AND e.state = 'dispatched') h ON 1 = 1
ORDER BY h.queued_at, h.id

-- name: op_delete
DELETE FROM operations WHERE id = $2 AND tenant_id /*:tenant_is*/ $1

-- name: exec_delete_by_op
DELETE FROM executions WHERE tenant_id = $1 AND operation_id = $2

-- name: tombstone_insert
INSERT INTO tombstones (tenant_id, operation_id, number, reason, purged_at)
VALUES ($1, $2, $3, $4, $5)

-- name: tombstone_get
SELECT operation_id, number, reason, purged_at FROM tombstones
WHERE tenant_id = $1 AND operation_id = $2

-- name: tombstone_by_number
SELECT operation_id, number, reason, purged_at FROM tombstones
WHERE tenant_id = $1 AND number = $2

-- name: events_after
SELECT * FROM events WHERE tenant_id = $1 AND seq > $2 ORDER BY seq LIMIT $3

-- name: events_after_op
SELECT * FROM events WHERE tenant_id = $1 AND operation_id = $2 AND seq > $3
ORDER BY seq LIMIT $4

-- name: filter_created_after
AND o.created_at >= {p}

-- name: filter_created_before
AND o.created_at < {p}

-- name: filter_before_number
AND o.number < {p}

-- name: tenant_any
SELECT id FROM tenants LIMIT 1

-- name: key_insert
INSERT INTO api_keys (id, tenant_id, name, role, targets, secret_hash, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)

-- name: key_by_hash
SELECT * FROM api_keys WHERE secret_hash = $1 AND revoked_at IS NULL

-- name: key_by_id
SELECT * FROM api_keys WHERE id = $1 AND revoked_at IS NULL

-- name: key_get
SELECT * FROM api_keys WHERE tenant_id = $1 AND id = $2

-- name: key_list
SELECT * FROM api_keys WHERE tenant_id = $1 ORDER BY id

-- name: key_revoke
UPDATE api_keys SET revoked_at = $3 WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL

-- name: token_insert
INSERT INTO tokens (token_hash, key_id, expires_at) VALUES ($1, $2, $3)

-- name: token_purge
DELETE FROM tokens WHERE key_id = $1 AND expires_at <= $2

-- name: token_expiry
SELECT expires_at FROM tokens WHERE token_hash = $1

-- name: key_by_token
SELECT k.* FROM tokens t JOIN api_keys k ON k.id = t.key_id
WHERE t.token_hash = $1 AND t.expires_at > $2 AND k.revoked_at IS NULL

-- name: lock_clear_dead
DELETE FROM token_locks WHERE tenant_id = $1 AND name = $2 AND NOT EXISTS (
    SELECT 1 FROM tokens t JOIN api_keys k ON k.id = t.key_id
    WHERE t.token_hash = token_locks.token_hash AND t.expires_at > $3 AND k.revoked_at IS NULL
)

-- name: lock_insert
INSERT INTO token_locks (tenant_id, name, token_hash, taken_at) VALUES ($1, $2, $3, $4)
ON CONFLICT (tenant_id, name) DO NOTHING

-- name: lock_holder
SELECT l.token_hash FROM token_locks l JOIN tokens t ON t.token_hash = l.token_hash
JOIN api_keys k ON k.id = t.key_id
WHERE l.tenant_id = $1 AND l.name = $2 AND t.expires_at > $3 AND k.revoked_at IS NULL

-- name: lock_release
DELETE FROM token_locks WHERE tenant_id = $1 AND name = $2 AND token_hash = $3
RETURNING token_hash

-- name: exec_list
SELECT e.* FROM executions e JOIN operations o ON o.id = e.operation_id
WHERE e.tenant_id = $1 AND o.number IS NOT NULL {filters}
ORDER BY e.id DESC LIMIT {limit} OFFSET {offset}

-- name: exec_filter_internal
AND o.internal = {p}

-- name: events_purge
DELETE FROM events WHERE created_at < $1

-- name: exec_due_any
SELECT id FROM executions WHERE due_at <= $1 LIMIT 1

-- name: exec_queued_any
-- whether a claim may find anything (executions_inbox): most claims of a waiting agent don't
SELECT id FROM executions WHERE tenant_id = $1 AND target_id = $2 AND state = 'queued' LIMIT 1

-- name: exec_tombstones_insert
INSERT INTO execution_tombstones (tenant_id, execution_id, operation_id)
SELECT tenant_id, id, operation_id FROM executions WHERE tenant_id = $1 AND operation_id = $2

-- name: exec_tombstone_get
SELECT execution_id, operation_id FROM execution_tombstones
WHERE tenant_id = $1 AND execution_id = $2

-- name: op_lock
SELECT * FROM operations WHERE id = $2 AND tenant_id /*:tenant_is*/ $1 /*:lock_rows*/

-- name: exec_lock
SELECT * FROM executions WHERE id = $2 AND tenant_id /*:tenant_is*/ $1 /*:lock_rows*/

-- name: exec_lock_by_op
SELECT * FROM executions WHERE tenant_id = $1 AND operation_id = $2
ORDER BY id /*:lock_rows*/

-- name: exec_due
SELECT * FROM executions WHERE due_at <= $1 ORDER BY due_at LIMIT $2 /*:lock_rows_skip_locked*/

-- name: op_expired
SELECT * FROM operations
WHERE completed_at < $1 AND state IN ('succeeded', 'failed', 'cancelled')
ORDER BY completed_at LIMIT $2 /*:lock_rows_skip_locked*/

-- name: op_dispatched_since
SELECT count(*) AS n FROM executions WHERE operation_id = $1 AND started_at > $2

-- name: backlog
-- Unfinished executions per kind and state, and the oldest queue time of each group
-- (read for the queued ones). The predicate is executions_unfinished's.
SELECT o.kind AS kind, e.state AS state, count(*) AS n, min(e.queued_at) AS oldest
FROM executions e JOIN operations o ON o.id = e.operation_id
WHERE e.state <> 'succeeded' AND e.state <> 'failed' AND e.state <> 'timed_out'
  AND e.state <> 'cancelled'
GROUP BY o.kind, e.state

-- name: exec_running_since
-- Work a target holds since before $1 that has no execution.stalled event yet for
-- this attempt (the event is written after the attempt's start), with its kind.
SELECT e.*, o.kind AS kind FROM executions e JOIN operations o ON o.id = e.operation_id
WHERE e.state <> 'succeeded' AND e.state <> 'failed' AND e.state <> 'timed_out'
  AND e.state <> 'cancelled'
  AND e.state IN ('dispatched', 'acknowledged', 'in_progress') AND e.started_at < $1
  AND NOT EXISTS (SELECT 1 FROM events v WHERE v.tenant_id = e.tenant_id
                  AND v.operation_id = e.operation_id AND v.execution_id = e.id
                  AND v.type = 'execution.stalled' AND v.created_at >= e.started_at)
ORDER BY e.started_at LIMIT $2

-- name: exec_stalled_event
SELECT seq FROM events WHERE tenant_id = $1 AND operation_id = $2 AND execution_id = $3
  AND type = 'execution.stalled' AND created_at >= $4
LIMIT 1

-- Testing mode (opstatus/testing): wipe one tenant's state but its tenant row and keys,
-- children before parents, in one transaction (SqlStore.reset_tenant runs them in order).
-- name: reset_webhook_deliveries
DELETE FROM webhook_deliveries WHERE tenant_id = $1

-- name: reset_webhooks
DELETE FROM webhooks WHERE tenant_id = $1

-- name: reset_events
DELETE FROM events WHERE tenant_id = $1

-- name: reset_tombstones
DELETE FROM tombstones WHERE tenant_id = $1

-- name: reset_execution_tombstones
DELETE FROM execution_tombstones WHERE tenant_id = $1

-- name: reset_executions
DELETE FROM executions WHERE tenant_id = $1

-- name: reset_operations
DELETE FROM operations WHERE tenant_id = $1

-- name: reset_group_members
DELETE FROM group_members WHERE tenant_id = $1

-- name: reset_groups
DELETE FROM groups WHERE tenant_id = $1

-- name: reset_targets
DELETE FROM targets WHERE tenant_id = $1

-- name: reset_counters
UPDATE tenants SET op_seq = 0, event_seq = 0 WHERE id = $1
