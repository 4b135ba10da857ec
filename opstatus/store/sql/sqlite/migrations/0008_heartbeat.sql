-- opstatus schema 8: a heartbeat per operation (seconds an agent may stay silent on
-- started work); NULL for operations made before it: no heartbeat deadline.
ALTER TABLE operations ADD COLUMN timeout_heartbeat real;
