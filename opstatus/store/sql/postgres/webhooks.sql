-- PostgreSQL-only webhook blocks: replicas lease webhooks with SKIP LOCKED.

-- name: lock_leased
-- (a fragment) replicas lease different webhooks; the tenants rows stay unlocked
FOR UPDATE OF w SKIP LOCKED
