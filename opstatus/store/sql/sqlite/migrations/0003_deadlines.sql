-- opstatus schema 3: each execution's next deadline, swept by the engine in every replica.
ALTER TABLE executions ADD COLUMN due_at real;
CREATE INDEX executions_due ON executions (due_at) WHERE due_at IS NOT NULL;
CREATE INDEX operations_completed ON operations (completed_at) WHERE completed_at IS NOT NULL;
CREATE INDEX events_created ON events (created_at);
