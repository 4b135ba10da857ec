-- opstatus schema 7 (SQLite): the unfinished executions, for the metrics scrape (queue
-- depth and age per kind, executions per state) and the engine's stall sweep, which
-- would otherwise read every execution ever kept. Finished ones are most of the table.
CREATE INDEX executions_unfinished ON executions (state, started_at)
    WHERE state <> 'succeeded' AND state <> 'failed' AND state <> 'timed_out'
      AND state <> 'cancelled';
