-- SQLite-only webhook blocks: the write transaction holds the database's write lock,
-- so the lease needs no row locks.

-- name: webhook_lease
UPDATE webhooks SET lease_owner = $1, lease_expires_at = $2
WHERE id IN (
    SELECT w.id FROM webhooks w JOIN tenants t ON t.id = w.tenant_id
    WHERE (w.lease_owner IS NULL OR w.lease_expires_at <= $3)
      AND ((w.cursor_seq < t.event_seq
            AND (w.next_attempt_at IS NULL OR w.next_attempt_at <= $3))
           OR EXISTS (SELECT 1 FROM webhook_deliveries d
                      WHERE d.webhook_id = w.id AND d.status = 'pending'))
    ORDER BY w.lease_expires_at NULLS FIRST, w.id LIMIT $4)
RETURNING *
