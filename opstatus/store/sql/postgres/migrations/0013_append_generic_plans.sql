-- opstatus schema 13 (PostgreSQL only): the commit-time trigger of migration 0008 plans
-- its statements once per session, not at every commit. The sessions plan each
-- statement for its values (plan_cache_mode=force_custom_plan, store/postgres.py), and
-- the trigger's four statements inherited that: in P3 their planning was 0.27 ms of
-- PostgreSQL's CPU per operation (pg_stat_statements), three of them planned while the
-- tenant row lock, which every write of the tenant waits for, was held. Their plans
-- cannot go wrong as the tables grow: each finds its row by a primary key that no other
-- index competes with. The operation's tenant is compared with IS NOT DISTINCT FROM (the
-- column is NOT NULL, so it means "="), which no index serves: an "=" on tenant_id made
-- operations_created_number as cheap as the primary key while the table was empty, and a
-- plan cached then scanned the tenant's operations at every commit.
CREATE OR REPLACE FUNCTION opstatus_append_at_commit() RETURNS trigger LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan AS $$
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
         WHERE id = NEW.numbering AND tenant_id IS NOT DISTINCT FROM NEW.tenant_id;
    END IF;
    DELETE FROM event_appends WHERE id = NEW.id;
    RETURN NULL;
END
$$;
