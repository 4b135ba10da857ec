"""The statements a claim, a report and their write send find their rows by key: none
reads the tenant's other operations or executions (PostgreSQL, EXPLAIN ANALYZE).

A statement whose ids come only inside a JSON document, or from a subquery, leaves the
planner no estimate of how few rows it touches: it may scan all of a tenant's rows and
still answer correctly, only slower as the tenant grows (a first ``state_write`` did,
and P3 ran 25 % slower for it). These tests read the plans as run, on a tenant of
OPERATIONS operations, with its statistics gathered and (for the lookups by id) before
any ANALYZE, as a new database runs until autovacuum first reaches it; and the plan the
commit-time trigger caches for its session.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from opstatus.domain import changes
from opstatus.domain.records import ExecutionQuery, Tenant
from opstatus.service.operations import Operations
from opstatus.service.requests import CreateOperation
from opstatus.store import pgflush
from opstatus.store.postgres import PostgresStore, session_settings

pytestmark = pytest.mark.postgres

OPERATIONS = 400  #: the tenant's size: a scan of it reads hundreds of rows
MOST = 8  #: rows a scan of operations or executions may read: the statement's own


async def _grow(pg_url: str, *, analyzed: bool) -> PostgresStore:
    """An open store whose tenant "acme" has OPERATIONS operations on targets t0-t3."""
    store = PostgresStore(pg_url, min_size=1, max_size=2)
    await store.open()
    await store.migrate()
    await store.create_tenant(Tenant(id="acme", name="Acme", created_at=datetime.now(UTC)))
    ops = Operations(store, register_targets=True)
    for i in range(OPERATIONS):
        await ops.create("acme", CreateOperation(kind="test", targets=[f"t{i % 4}"]))
    if analyzed:  # the statistics autovacuum gathers in time
        async with store.driver.write() as tx:
            await tx.execute("ANALYZE operations, executions")
    return store


@pytest.fixture
async def grown(pg_url: str) -> AsyncIterator[PostgresStore]:
    store = await _grow(pg_url, analyzed=True)
    yield store
    await store.close()


@pytest.fixture(params=["analyzed", "never analyzed"])
async def any_stats(request: pytest.FixtureRequest, pg_url: str) -> AsyncIterator[PostgresStore]:
    """A grown tenant with its statistics gathered, or with none yet."""
    store = await _grow(pg_url, analyzed=request.param == "analyzed")
    yield store
    await store.close()


def _scans(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every node of ``plan`` that reads operations or executions."""
    if plan.get("Relation Name") in ("operations", "executions"):
        yield plan
    for child in plan.get("Plans", []):
        yield from _scans(child)


async def _rows_read(store: PostgresStore, sql: str, *args: Any) -> list[tuple[str, int]]:
    """(relation, rows read) of each scan of operations or executions in ``sql`` as run
    (rolled back)."""
    async with store.driver.pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        try:
            [row] = await conn.fetch(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", *args)
        finally:
            await tx.rollback()
    [plan] = json.loads(row[0])
    return [
        (node["Relation Name"],
         int(node["Actual Rows"] * node["Actual Loops"] + node.get("Rows Removed by Filter", 0)
             + node.get("Rows Removed by Index Recheck", 0)))
        for node in _scans(plan["Plan"])
    ]  # fmt: skip


async def test_a_claim_and_a_report_lock_only_their_rows(any_stats: PostgresStore) -> None:
    q, now = any_stats.driver.queries, datetime.now(UTC)
    window = now - timedelta(minutes=1)
    claimed = await _rows_read(any_stats, q["exec_claim"], "acme", "t1", 2, window)
    assert claimed and all(n <= MOST for _, n in claimed), claimed
    held = await any_stats.find_executions("acme", ExecutionQuery(targets=["t2"], limit=2))
    ids = [e.id for e in held]
    locked = await _rows_read(any_stats, q["exec_lock_many"], "acme", ids)
    assert {r for r, _ in locked} == {"operations", "executions"}
    assert all(n <= MOST for _, n in locked), locked


async def test_the_folded_write_finds_its_rows_by_key(grown: PostgresStore) -> None:
    now = datetime.now(UTC)
    found = await grown.find_executions("acme", ExecutionQuery(targets=["t3"], limit=2))
    pairs = [(e, changes.dispatch(e, now, 60)) for e in found]
    settled = [
        changes.settle(await grown.get_operation("acme", e.operation_id), [pair], now)
        for e, pair in zip(found, pairs, strict=True)
    ]
    args = pgflush.arguments(
        [op for op, _ in settled], [after for _, after in pairs],
        [event for _, events in settled for event in events], grown.driver.codec,
    )  # fmt: skip
    written = await _rows_read(grown, grown.driver.queries["state_write"], "acme", *args)
    assert {r for r, _ in written} == {"operations", "executions"}
    assert all(n <= MOST for _, n in written), written


async def _commit_time_plans(pg_url: str, operation_id: str) -> list[dict[str, Any]]:
    """The plans (auto_explain, JSON) of the statements the commit-time trigger runs
    when a session like the store's queues the renumbering of ``operation_id``."""
    conn = await asyncpg.connect(pg_url, server_settings=session_settings(pg_url))
    plans: list[dict[str, Any]] = []

    def heard(_conn: Any, message: Any) -> None:  # "duration: … ms  plan:\n{json}"
        if message.message.startswith("duration:"):
            plans.append(json.loads(message.message.split("\n", 1)[1]))

    conn.add_log_listener(heard)
    try:
        await conn.execute(
            "LOAD 'auto_explain'; SET auto_explain.log_min_duration = 0;"
            " SET auto_explain.log_nested_statements = on;"
            " SET auto_explain.log_format = json; SET auto_explain.log_level = notice"
        )
        for _ in range(7):  # past the five custom plans of plan_cache_mode=auto
            async with conn.transaction():
                await conn.execute(
                    "INSERT INTO event_appends (tenant_id, numbering, types, operation_ids,"
                    " execution_ids, target_ids, states, progresses, datas, created_ats)"
                    " VALUES ('acme', $1, '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}')",
                    operation_id,
                )
    finally:
        await conn.close()
    return plans


async def test_the_commit_time_trigger_plans_once_and_by_key(pg_url: str) -> None:
    """The trigger's statements are planned for the session (its plan_cache_mode), not
    at every commit, and the numbering finds the operation by its primary key on tables
    never analyzed, where an index on (tenant_id, ...) costs the same."""
    store = PostgresStore(pg_url, min_size=1, max_size=1)
    await store.open()
    await store.migrate()
    await store.create_tenant(Tenant(id="acme", name="Acme", created_at=datetime.now(UTC)))
    view, _ = await Operations(store, register_targets=True).create(
        "acme", CreateOperation(kind="test", targets=["t0"])
    )
    async with store.driver.read() as conn:
        [config] = await conn.fetch(
            "SELECT proconfig FROM pg_proc WHERE proname = 'opstatus_append_at_commit'"
        )
    await store.close()
    assert "plan_cache_mode=force_generic_plan" in config["proconfig"]
    plans = await _commit_time_plans(pg_url, view.operation.id)
    numbering = [
        node for p in plans if p["Query Text"].lstrip().startswith("UPDATE operations")
        for node in _scans(p["Plan"]) if node["Node Type"].endswith("Scan")
    ]  # fmt: skip
    assert len(numbering) == 7, plans
    assert {node.get("Index Name") for node in numbering} == {"operations_pkey"}, numbering


@pytest.mark.parametrize("name", ["op_get", "op_number", "op_lock", "exec_get", "exec_lock"])
async def test_a_lookup_by_id_reads_its_row_alone(any_stats: PostgresStore, name: str) -> None:
    [execution] = await any_stats.find_executions("acme", ExecutionQuery(targets=["t1"], limit=1))
    key = execution.id if name.startswith("exec") else execution.operation_id
    read = await _rows_read(any_stats, any_stats.driver.queries[name], "acme", key)
    assert read and all(n == 1 for _, n in read), read
