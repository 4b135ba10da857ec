-- opstatus schema 8: event seqs and operation numbers handed out inside COMMIT (issue #7).
-- Seqs are gapless and in commit order per tenant because the tenant row's counters
-- are bumped under its row lock, held until the transaction ends. Bumped by the
-- transaction's last statement, that lock was held across two client round trips
-- (the statement, then COMMIT) and whatever the client's event loop did in between:
-- under load most of a write's time went into waiting for that lock (P3). Now the
-- transaction queues one row here, and a deferred constraint trigger bumps the
-- counters, inserts the events and numbers the new operation while PostgreSQL
-- commits: the lock is held for that and the WAL flush, with no client in the loop.
CREATE TABLE event_appends (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id     text NOT NULL,
    numbering     text,               -- a new operation's id: it gets the next number
    types         text[] NOT NULL,    -- the events, one array per column
    operation_ids text[] NOT NULL,
    execution_ids text[] NOT NULL,
    target_ids    text[] NOT NULL,
    states        text[] NOT NULL,
    progresses    float8[] NOT NULL,
    datas         jsonb[] NOT NULL,
    created_ats   timestamptz[] NOT NULL
);

CREATE FUNCTION opstatus_append_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    counters record;
    n int := cardinality(NEW.types);
BEGIN
    UPDATE tenants
       SET op_seq = op_seq + (NEW.numbering IS NOT NULL)::int, event_seq = event_seq + n
     WHERE id = NEW.tenant_id
    RETURNING op_seq, event_seq INTO counters;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no tenant %', NEW.tenant_id USING ERRCODE = 'foreign_key_violation';
    END IF;
    INSERT INTO events (tenant_id, seq, type, operation_id, execution_id, target_id, state,
                        progress, data, created_at)
    SELECT NEW.tenant_id, counters.event_seq - n + e.i, e.type, e.operation_id,
           e.execution_id, e.target_id, e.state, e.progress, e.data, e.created_at
      FROM unnest(NEW.types, NEW.operation_ids, NEW.execution_ids, NEW.target_ids,
                  NEW.states, NEW.progresses, NEW.datas, NEW.created_ats)
           WITH ORDINALITY AS e(type, operation_id, execution_id, target_id, state,
                                progress, data, created_at, i);
    IF NEW.numbering IS NOT NULL THEN
        UPDATE operations SET number = counters.op_seq
         WHERE tenant_id = NEW.tenant_id AND id = NEW.numbering;
    END IF;
    DELETE FROM event_appends WHERE id = NEW.id;
    RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER event_appends_at_commit
    AFTER INSERT ON event_appends
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION opstatus_append_at_commit();
