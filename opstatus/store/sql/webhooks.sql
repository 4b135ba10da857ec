-- Webhook subscriptions and their delivery log (store/sqlwebhooks.py). Every write of
-- the delivery worker names its lease owner: a worker whose lease ran out (another
-- took the webhook over) changes nothing.

-- name: webhook_insert
INSERT INTO webhooks (id, tenant_id, url, events, secret, created_at, cursor_seq)
SELECT $1, id, $3, $4, $5, $6, event_seq FROM tenants WHERE id = $2
RETURNING *

-- name: webhook_get
SELECT * FROM webhooks WHERE tenant_id = $1 AND id = $2

-- name: webhook_list
SELECT * FROM webhooks WHERE tenant_id = $1 AND id > $2 ORDER BY id LIMIT $3

-- name: webhook_delete
DELETE FROM webhooks WHERE tenant_id = $1 AND id = $2 RETURNING *

-- name: webhook_due_any
SELECT w.id FROM webhooks w JOIN tenants t ON t.id = w.tenant_id
WHERE (w.lease_owner IS NULL OR w.lease_expires_at <= $1)
  AND ((w.cursor_seq < t.event_seq AND (w.next_attempt_at IS NULL OR w.next_attempt_at <= $1))
       OR EXISTS (SELECT 1 FROM webhook_deliveries d
                  WHERE d.webhook_id = w.id AND d.status = 'pending'))
LIMIT 1

-- name: webhook_lease
UPDATE webhooks SET lease_owner = $1, lease_expires_at = $2
WHERE id IN (
    SELECT w.id FROM webhooks w JOIN tenants t ON t.id = w.tenant_id
    WHERE (w.lease_owner IS NULL OR w.lease_expires_at <= $3)
      AND ((w.cursor_seq < t.event_seq
            AND (w.next_attempt_at IS NULL OR w.next_attempt_at <= $3))
           OR EXISTS (SELECT 1 FROM webhook_deliveries d
                      WHERE d.webhook_id = w.id AND d.status = 'pending'))
    ORDER BY w.lease_expires_at NULLS FIRST, w.id LIMIT $4 /*:lock_leased*/)
RETURNING *

-- name: webhook_record
UPDATE webhooks SET cursor_seq = $3, attempts = $4, next_attempt_at = $5,
                    lease_expires_at = $6, delivery_seq = delivery_seq + $7
WHERE id = $1 AND lease_owner = $2
RETURNING delivery_seq

-- name: webhook_release
UPDATE webhooks SET lease_owner = NULL, lease_expires_at = $3
WHERE id = $1 AND lease_owner = $2

-- name: webhook_release_all
UPDATE webhooks SET lease_owner = NULL, lease_expires_at = $2 WHERE lease_owner = $1

-- name: webhook_bump_delivery
UPDATE webhooks SET delivery_seq = delivery_seq + 1 WHERE tenant_id = $1 AND id = $2
RETURNING delivery_seq

-- name: delivery_insert
INSERT INTO webhook_deliveries (webhook_id, number, tenant_id, seq, type, attempt, status,
                                status_code, error, replay_of, next_attempt_at, created_at,
                                delivered_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)

-- name: delivery_get
SELECT * FROM webhook_deliveries WHERE tenant_id = $1 AND webhook_id = $2 AND number = $3

-- name: delivery_list
SELECT * FROM webhook_deliveries WHERE tenant_id = $1 AND webhook_id = $2 AND number < $3
ORDER BY number DESC LIMIT $4

-- name: delivery_pending
SELECT * FROM webhook_deliveries WHERE webhook_id = $1 AND status = 'pending'
ORDER BY number LIMIT $2

-- name: delivery_finish
UPDATE webhook_deliveries SET status = $3, status_code = $4, error = $5, delivered_at = $6
WHERE webhook_id = $1 AND number = $2 AND status = 'pending'
  AND EXISTS (SELECT 1 FROM webhooks w WHERE w.id = $1 AND w.lease_owner = $7)
RETURNING *

-- name: delivery_purge
DELETE FROM webhook_deliveries WHERE created_at < $1 AND status <> 'pending'

-- name: event_get
SELECT * FROM events WHERE tenant_id = $1 AND seq = $2

-- name: webhook_oldest_pending
-- The creation time of the oldest event some webhook has still to deliver (or skip).
SELECT min(v.created_at) AS oldest FROM webhooks w
JOIN events v ON v.tenant_id = w.tenant_id AND v.seq = w.cursor_seq + 1
