-- opstatus schema 10 (SQLite: its migration 8): a heartbeat per operation (seconds an
-- agent may stay silent on started work); NULL for operations made before it: no deadline.
ALTER TABLE operations ADD COLUMN timeout_heartbeat double precision;
