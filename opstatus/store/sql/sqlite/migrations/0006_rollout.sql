-- opstatus schema 6: rollout control per operation (dispatch cap, abort on failures).
ALTER TABLE operations ADD COLUMN max_per_minute integer;
ALTER TABLE operations ADD COLUMN abort_after_failures integer;
CREATE INDEX executions_started ON executions (operation_id, started_at);
