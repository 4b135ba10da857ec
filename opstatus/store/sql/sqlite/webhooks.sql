-- SQLite-only webhook blocks: the write transaction holds the database's write lock,
-- so the lease needs no row locks.

-- name: lock_leased
-- (a fragment) the write transaction holds the database's write lock already
