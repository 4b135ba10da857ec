-- opstatus schema 15 (PostgreSQL only): a batch of creates (op_create) and the read of
-- their numbers (op_numbers) planned once per session, as migration 0014's functions are.
-- Planning the batch's statement took 0.9-1.1 ms of PostgreSQL's CPU per call in P3 (the
-- numbers' read 0.2 ms) against 1.6-2.3 ms to run it (pg_stat_statements). Its plan is right
-- on empty tables and as they grow: each named target is looked up by the targets'
-- primary key from a scalar subquery (an anti-join of "NOT EXISTS" may hash a sequential
-- scan of every target instead), and a create's idempotency key through a LATERAL lookup
-- on operations_idempotency, only for creates that carry one.

-- op_create's statement; its parameters in its order ($1-$57, an array per column)
CREATE FUNCTION opstatus_create(
    text[], text[], text[], text[], boolean[], text[], timestamptz[], float8[],
    float8[], float8[], integer[], boolean[], text[], text[], text[], text[], float8[],
    integer[], timestamptz[], text[], text[], timestamptz[], timestamptz[],
    timestamptz[], timestamptz[], bigint[], integer[], integer[], float8[], bigint[],
    text[], text[], text[], text[], text[], text[], float8[], timestamptz[], text[],
    text[], text[], integer[], bigint[], timestamptz[], timestamptz[], timestamptz[],
    timestamptz[], timestamptz[], timestamptz[], text[], text[], text[], text[],
    text[], float8[], text[], timestamptz[])
RETURNS TABLE (tenant_found boolean, unknown_targets text[], prior_operation text,
               prior_request_hash text)
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    RETURN QUERY
    WITH input AS (
        SELECT * FROM unnest(
            $1::text[], $2::text[], $3::text[], $4::text[], $5::boolean[], $6::text[],
            $7::timestamptz[], $8::float8[], $9::float8[], $10::float8[], $11::integer[],
            $12::boolean[], $13::text[], $14::text[], $15::text[], $16::text[], $17::float8[],
            $18::integer[], $19::timestamptz[], $20::text[], $21::text[], $22::timestamptz[],
            $23::timestamptz[], $24::timestamptz[], $25::timestamptz[], $26::bigint[],
            $27::integer[], $28::integer[], $29::float8[])
        WITH ORDINALITY AS i(
            id, tenant_id, kind, parameters, internal, groups, schedule_at, timeout_queue,
            timeout_lease, timeout_run, retries, exclusive, idempotency_key, request_hash, state,
            counts, progress_sum, total, eta, error, result, created_at, started_at, updated_at,
            completed_at, version, max_per_minute, abort_after_failures, timeout_heartbeat, k)),
    unknown AS (
        SELECT w.k, array_agg(w.target ORDER BY w.target) AS ids
        FROM unnest($30::bigint[], $31::text[]) AS w(k, target) JOIN input i ON i.k = w.k
        WHERE (SELECT true FROM targets t WHERE t.tenant_id = i.tenant_id AND t.id = w.target) IS NULL
        GROUP BY w.k),
    prior AS (
        SELECT i.k, p.id, p.request_hash FROM input i,
        LATERAL (SELECT o.id, o.request_hash FROM operations o
                 WHERE o.tenant_id = i.tenant_id AND o.idempotency_key = i.idempotency_key
                 LIMIT 1) p
        WHERE i.idempotency_key IS NOT NULL),
    go AS (
        SELECT i.* FROM input i
        WHERE EXISTS (SELECT 1 FROM tenants WHERE id = i.tenant_id)
          AND NOT EXISTS (SELECT 1 FROM prior p WHERE p.k = i.k)
          AND NOT EXISTS (SELECT 1 FROM unknown u WHERE u.k = i.k)),
    op AS (
        INSERT INTO operations (
            id, tenant_id, number, kind, parameters, internal, groups, schedule_at,
            timeout_queue, timeout_lease, timeout_run, retries, exclusive, idempotency_key,
            request_hash, state, counts, progress_sum, total, eta, error, result,
            created_at, started_at, updated_at, completed_at, version, max_per_minute,
            abort_after_failures, timeout_heartbeat)
        SELECT id, tenant_id, NULL, kind, parameters::jsonb, internal, groups::jsonb, schedule_at,
               timeout_queue, timeout_lease, timeout_run, retries, exclusive, idempotency_key,
               request_hash, state, counts::jsonb, progress_sum, total, eta, error, result::jsonb,
               created_at, started_at, updated_at, completed_at, version, max_per_minute,
               abort_after_failures, timeout_heartbeat
        FROM go ORDER BY k
        RETURNING id),
    executions_made AS (
        INSERT INTO executions (
            id, tenant_id, operation_id, target_id, state, progress, eta, details, error, result,
            attempt, version, queued_at, started_at, updated_at, finished_at, lease_expires_at,
            due_at)
        SELECT e.id, e.tenant_id, e.operation_id, e.target_id, e.state, e.progress, e.eta,
               e.details::jsonb, e.error, e.result::jsonb, e.attempt, e.version, e.queued_at,
               e.started_at, e.updated_at, e.finished_at, e.lease_expires_at, e.due_at
        FROM unnest(
            $32::text[], $33::text[], $34::text[], $35::text[], $36::text[], $37::float8[],
            $38::timestamptz[], $39::text[], $40::text[], $41::text[], $42::integer[],
            $43::bigint[], $44::timestamptz[], $45::timestamptz[], $46::timestamptz[],
            $47::timestamptz[], $48::timestamptz[], $49::timestamptz[])
            AS e(id, tenant_id, operation_id, target_id, state, progress, eta, details, error,
                 result, attempt, version, queued_at, started_at, updated_at, finished_at,
                 lease_expires_at, due_at)
        WHERE e.operation_id IN (SELECT id FROM op)),
    appended AS (
        INSERT INTO event_appends (tenant_id, numbering, types, operation_ids, execution_ids,
                                   target_ids, states, progresses, datas, created_ats)
        SELECT go.tenant_id, go.id, ARRAY[v.type], ARRAY[v.operation_id], ARRAY[v.execution_id],
               ARRAY[v.target_id], ARRAY[v.state], ARRAY[v.progress], ARRAY[v.data::jsonb],
               ARRAY[v.created_at]
        FROM go JOIN unnest($50::text[], $51::text[], $52::text[], $53::text[], $54::text[],
                            $55::float8[], $56::text[], $57::timestamptz[])
                     WITH ORDINALITY AS v(type, operation_id, execution_id, target_id, state,
                                          progress, data, created_at, k) ON v.k = go.k
        WHERE go.id IN (SELECT id FROM op)
        ORDER BY go.k)
    SELECT EXISTS (SELECT 1 FROM tenants WHERE id = i.tenant_id) AS tenant,
           coalesce(u.ids, '{}') AS unknown, p.id AS prior_id, p.request_hash AS prior_hash
    FROM input i LEFT JOIN unknown u ON u.k = i.k LEFT JOIN prior p ON p.k = i.k
    ORDER BY i.k;
END
$$;

-- op_numbers: the numbers of operations created together, each by its primary key from a
-- scalar subquery (a plain join, or a LATERAL one PostgreSQL flattens into a join, was
-- planned on empty tables as a hash join over a sequential scan of every operation);
-- NULL for an id not found
CREATE FUNCTION opstatus_numbers(p_tenants text[], p_ids text[])
RETURNS TABLE (operation_id text, operation_number bigint)
LANGUAGE plpgsql STABLE SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    RETURN QUERY
    SELECT w.id, (SELECT x.number FROM operations x
                  WHERE x.id = w.id AND x.tenant_id IS NOT DISTINCT FROM w.tenant_id)
    FROM unnest(p_tenants, p_ids) AS w(tenant_id, id);
END
$$;
