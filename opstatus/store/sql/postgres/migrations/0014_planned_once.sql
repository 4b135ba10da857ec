-- opstatus schema 14 (PostgreSQL only): the statements every job runs through, planned
-- once per session. The sessions plan each statement for its values
-- (plan_cache_mode=force_custom_plan, store/postgres.py), and in P3 that planning was a
-- quarter of PostgreSQL's CPU: an inbox read, a claim, a report's lock and a write cost
-- 0.25-0.45 ms each to plan against 0.05-0.55 ms to run (pg_stat_statements). Each of
-- them is now a function with plan_cache_mode=force_generic_plan, which its block in
-- postgres/queries.sql calls. A generic plan is made at a function's first run in a
-- session, on whatever the tables hold then (a new database: nothing, no statistics),
-- and kept until ANALYZE changes them; these plans cannot go wrong as the tables grow:
-- every row is found by its primary key (the tenant compared with IS NOT DISTINCT FROM,
-- which no index serves: tenant_is in postgres/queries.sql) or by the one partial index
-- on (tenant_id, target_id) that fits (executions_inbox, executions_held), and every row
-- set is written one primary-key UPDATE at a time (test_pg_plans reads the plans made on
-- empty tables and run on a grown tenant).

-- Operations locked in id order (the order every writer locks them in), each by its
-- primary key; ids may repeat. Called by the claim and the report's lock with the
-- operation ids of the executions they locked: the array is read whole before the first
-- lock, so every execution lock comes before every operation lock.
CREATE FUNCTION opstatus_lock_operations(p_tenant text, p_ids text[])
RETURNS SETOF operations
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    RETURN QUERY
    SELECT l.* FROM (SELECT DISTINCT w.id FROM unnest(p_ids) AS w(id) ORDER BY w.id) w,
    LATERAL (SELECT * FROM operations o
             WHERE o.id = w.id AND o.tenant_id IS NOT DISTINCT FROM p_tenant FOR UPDATE) l;
END
$$;

-- exec_inbox: the executions a target holds, with what to run, and whether anything is
-- queued for it; one row with a NULL execution when nothing is held.
CREATE FUNCTION opstatus_inbox(p_tenant text, p_target text)
RETURNS TABLE (execution executions, operation_kind text, operation_parameters jsonb,
               queued boolean)
LANGUAGE plpgsql STABLE SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    RETURN QUERY
    SELECT h.exec_row, h.kind, h.parameters, q.queued FROM (
        SELECT EXISTS (SELECT 1 FROM executions x WHERE x.tenant_id = p_tenant
                       AND x.target_id = p_target AND x.state = 'queued') AS queued) q
    LEFT JOIN (
        SELECT e AS exec_row, e.queued_at, e.id, o.kind, o.parameters
        FROM executions e JOIN operations o ON o.id = e.operation_id
        WHERE e.tenant_id = p_tenant AND e.target_id = p_target AND e.state = 'dispatched') h
    ON true
    ORDER BY h.queued_at, h.id;
END
$$;

-- exec_claim: the oldest queued executions of a target (up to p_limit, skipping those
-- another claim holds and those of an operation at its dispatch cap), locked, and their
-- operations locked in id order after all of them, as every writer takes them.
CREATE FUNCTION opstatus_claim(p_tenant text, p_target text, p_limit integer,
                               p_window timestamptz)
RETURNS TABLE (execution executions, operation operations)
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    RETURN QUERY
    WITH claimed AS MATERIALIZED (
        SELECT x AS exec_row, x.id, x.operation_id, x.queued_at FROM executions x
        WHERE x.tenant_id = p_tenant AND x.target_id = p_target AND x.state = 'queued'
          AND NOT EXISTS (
            SELECT 1 FROM operations c WHERE c.id = x.operation_id
            AND c.max_per_minute IS NOT NULL
            AND c.max_per_minute <= (SELECT count(*) FROM executions d
                                     WHERE d.operation_id = c.id AND d.started_at > p_window))
        ORDER BY x.queued_at, x.id LIMIT p_limit
        FOR UPDATE SKIP LOCKED),
    locked AS MATERIALIZED (
        SELECT o AS op_row, o.id
        FROM opstatus_lock_operations(p_tenant, ARRAY(SELECT w.operation_id FROM claimed w)) o)
    SELECT c.exec_row, l.op_row FROM claimed c JOIN locked l ON l.id = c.operation_id
    ORDER BY c.queued_at, c.id;
END
$$;

-- exec_lock_many: the executions of a batch of reports locked in id order, then their
-- operations in id order.
CREATE FUNCTION opstatus_lock_many(p_tenant text, p_ids text[])
RETURNS TABLE (execution executions, operation operations)
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    RETURN QUERY
    WITH found AS MATERIALIZED (
        SELECT f.exec_row, f.id, f.operation_id
        FROM (SELECT DISTINCT w.id FROM unnest(p_ids) AS w(id) ORDER BY w.id) w,
        LATERAL (SELECT e AS exec_row, e.id, e.operation_id FROM executions e
                 WHERE e.id = w.id AND e.tenant_id IS NOT DISTINCT FROM p_tenant
                 FOR UPDATE) f),
    locked AS MATERIALIZED (
        SELECT o AS op_row, o.id
        FROM opstatus_lock_operations(p_tenant, ARRAY(SELECT w.operation_id FROM found w)) o)
    SELECT f.exec_row, l.op_row FROM found f JOIN locked l ON l.id = f.operation_id
    ORDER BY f.id;
END
$$;

-- state_write: a write transaction's folded changes (pgflush): its operations, its
-- executions (each an array of objects keyed by column, rows the transaction has locked)
-- and its events, handed to the commit-time numbering (event_appends, migration 0008).
CREATE FUNCTION opstatus_state_write(p_tenant text, p_ops jsonb, p_execs jsonb,
                                     p_events jsonb)
RETURNS void LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    u record;
BEGIN
    FOR u IN SELECT * FROM jsonb_to_recordset(p_ops) AS r(id text, state text, counts jsonb,
        progress_sum float8, total integer, eta timestamptz, error text, result jsonb,
        started_at timestamptz, updated_at timestamptz, completed_at timestamptz,
        version bigint)
    LOOP
        UPDATE operations SET state = u.state, counts = u.counts,
            progress_sum = u.progress_sum, total = u.total, eta = u.eta, error = u.error,
            result = u.result, started_at = u.started_at, updated_at = u.updated_at,
            completed_at = u.completed_at, version = u.version
        WHERE id = u.id AND tenant_id IS NOT DISTINCT FROM p_tenant;
    END LOOP;
    FOR u IN SELECT * FROM jsonb_to_recordset(p_execs) AS r(id text, state text,
        progress float8, eta timestamptz, details jsonb, error text, result jsonb,
        attempt integer, version bigint, queued_at timestamptz, started_at timestamptz,
        updated_at timestamptz, finished_at timestamptz, lease_expires_at timestamptz,
        due_at timestamptz)
    LOOP
        UPDATE executions SET state = u.state, progress = u.progress, eta = u.eta,
            details = u.details, error = u.error, result = u.result,
            attempt = u.attempt, version = u.version, queued_at = u.queued_at,
            started_at = u.started_at, updated_at = u.updated_at,
            finished_at = u.finished_at, lease_expires_at = u.lease_expires_at,
            due_at = u.due_at
        WHERE id = u.id AND tenant_id IS NOT DISTINCT FROM p_tenant;
    END LOOP;
    IF jsonb_array_length(p_events) > 0 THEN
        INSERT INTO event_appends (tenant_id, numbering, types, operation_ids,
                                   execution_ids, target_ids, states, progresses, datas,
                                   created_ats)
        SELECT p_tenant, NULL, array_agg(v.type ORDER BY v.k),
               array_agg(v.operation_id ORDER BY v.k), array_agg(v.execution_id ORDER BY v.k),
               array_agg(v.target_id ORDER BY v.k), array_agg(v.state ORDER BY v.k),
               array_agg(v.progress ORDER BY v.k), array_agg(v.data ORDER BY v.k),
               array_agg(v.created_at ORDER BY v.k)
        FROM ROWS FROM (jsonb_to_recordset(p_events) AS (type text, operation_id text,
            execution_id text, target_id text, state text, progress float8, data jsonb,
            created_at timestamptz)) WITH ORDINALITY AS v(type, operation_id, execution_id,
            target_id, state, progress, data, created_at, k);
    END IF;
END
$$;
