"""The statements a claim, a report and their write send find their rows by key: none
reads the tenant's other operations or executions (PostgreSQL, plans as run).

A statement whose ids come only inside a JSON document, or from a subquery, leaves the
planner no estimate of how few rows it touches: it may scan all of a tenant's rows and
still answer correctly, only slower as the tenant grows (a first ``state_write`` did,
and P3 ran 25 % slower for it). The statements every job runs through are planned once
per session (migration 0014's functions, the commit-time trigger): their plan is made at
their first run, which on a new database is on empty tables with no statistics, and
kept while the tables grow until ANALYZE. These tests read the plans as run, every
nested statement included (auto_explain), on a tenant of OPERATIONS operations: with its
statistics gathered, and with none, its session's plans made while the tables were
empty.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from opstatus.domain import changes
from opstatus.domain.records import ExecutionQuery, Target, Tenant
from opstatus.service.operations import Operations
from opstatus.service.requests import CreateOperation
from opstatus.store import pgflush
from opstatus.store.postgres import PostgresStore, _Conn

pytestmark = pytest.mark.postgres

OPERATIONS = 400  #: the tenant's size (operations, and targets): a scan reads hundreds
MOST = 8  #: rows a scan of operations or executions may read: the statement's own
#: the tables that grow with a tenant's work
_GROWN = ("operations", "executions", "targets")
#: every statement's plan to the client as a NOTICE, with the rows each node read
_EXPLAIN = (
    "LOAD 'auto_explain'; SET auto_explain.log_min_duration = 0;"
    " SET auto_explain.log_nested_statements = on; SET auto_explain.log_analyze = on;"
    " SET auto_explain.log_timing = off; SET auto_explain.log_format = json;"
    " SET auto_explain.log_level = notice"
)
#: a write of rows that do not exist: runs (and so plans) each of state_write's statements
_NO_ROWS: tuple[list[dict[str, str]], ...] = ([{"id": "none"}], [{"id": "none"}], [])


@asynccontextmanager
async def _explaining(conn: Any) -> AsyncIterator[list[dict[str, Any]]]:
    """The plans of every statement ``conn`` runs meanwhile, nested ones included."""
    plans: list[dict[str, Any]] = []

    def heard(_conn: Any, message: Any) -> None:  # "duration: … ms  plan:\n{json}"
        if message.message.startswith("duration:"):
            plans.append(json.loads(message.message.split("\n", 1)[1]))

    conn.add_log_listener(heard)
    try:
        await conn.execute(_EXPLAIN)
        yield plans
        await conn.execute("SET auto_explain.log_min_duration = -1")
    finally:
        conn.remove_log_listener(heard)


async def _run_plans(
    conn: Any, sql: str, *args: Any, first: str = "SELECT 1"
) -> list[dict[str, Any]]:
    """The plans of ``sql`` and of every statement it runs, run once on ``conn`` in a
    transaction rolled back (after ``first``)."""
    async with _explaining(conn) as plans:
        tx = conn.transaction()
        await tx.start()
        try:
            await conn.execute(first)
            await conn.fetch(sql, *args)
        finally:
            await tx.rollback()
    return plans


async def _plan_while_empty(store: PostgresStore) -> None:
    """Run the per-job statements on the store's one connection while nothing is stored,
    so the session's plans are made on empty tables."""
    q, window = store.driver.queries, datetime.now(UTC) - timedelta(minutes=1)
    runs = [
        ("exec_inbox", ("acme", "t1")),
        ("exec_claim", ("acme", "t1", 2, window)),
        ("exec_lock_many", ("acme", ["none"])),
        ("state_write", ("acme", *_NO_ROWS)),
    ]
    async with store.driver.pool.acquire() as conn:
        for name, args in runs:
            await _run_plans(conn, q[name], *args)


async def _grow(pg_url: str, *, analyzed: bool) -> PostgresStore:
    """An open store (one connection) whose tenant "acme" has OPERATIONS operations on
    targets t0-t3 of OPERATIONS targets; without ``analyzed``, its per-job plans made
    before any was created (the creates' at the first create)."""
    store = PostgresStore(pg_url, min_size=1, max_size=1)
    await store.open()
    await store.migrate()
    await store.create_tenant(Tenant(id="acme", name="Acme", created_at=datetime.now(UTC)))
    if not analyzed:
        await _plan_while_empty(store)
    ops = Operations(store, register_targets=True)
    await ops.create("acme", CreateOperation(kind="test", targets=["t0"]))
    now = datetime.now(UTC)
    targets = [f"t{i}" for i in range(1, OPERATIONS)]
    await store.register_targets(
        [Target(tenant="acme", id=t, name=t, labels={}, created_at=now) for t in targets]
    )
    for i in range(1, OPERATIONS):
        await ops.create("acme", CreateOperation(kind="test", targets=[f"t{i % 4}"]))
    if analyzed:  # the statistics autovacuum gathers in time
        async with store.driver.write() as tx:
            await tx.execute("ANALYZE operations, executions")
    return store


@pytest.fixture(params=["analyzed", "planned on empty tables, never analyzed"])
async def grown(request: pytest.FixtureRequest, pg_url: str) -> AsyncIterator[PostgresStore]:
    """A grown tenant with its statistics gathered, or with none and old plans."""
    store = await _grow(pg_url, analyzed=request.param == "analyzed")
    yield store
    await store.close()


def _scans(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every scan node of ``plan`` that reads operations, executions or targets."""
    if plan.get("Relation Name") in _GROWN and plan["Node Type"].endswith("Scan"):
        yield plan
    for child in plan.get("Plans", []):
        yield from _scans(child)


async def _rows_read(store: PostgresStore, sql: str, *args: Any) -> list[tuple[str, int]]:
    """(relation, rows read) of each scan of a _GROWN table in ``sql`` and the
    statements it runs, as run (rolled back)."""
    async with store.driver.pool.acquire() as conn:
        return _read(await _run_plans(conn, sql, *args))


def _read(plans: list[dict[str, Any]]) -> list[tuple[str, int]]:
    """(relation, rows read) of each scan of a _GROWN table in ``plans``."""
    return [
        (node["Relation Name"],
         int(node["Actual Rows"] * node["Actual Loops"] + node.get("Rows Removed by Filter", 0)
             + node.get("Rows Removed by Index Recheck", 0)))
        for plan in plans for node in _scans(plan["Plan"])
    ]  # fmt: skip


async def test_a_claim_and_a_report_lock_only_their_rows(grown: PostgresStore) -> None:
    q, now = grown.driver.queries, datetime.now(UTC)
    window = now - timedelta(minutes=1)
    claimed = await _rows_read(grown, q["exec_claim"], "acme", "t1", 2, window)
    assert claimed and all(n <= MOST for _, n in claimed), claimed
    held = await grown.find_executions("acme", ExecutionQuery(targets=["t2"], limit=2))
    ids = [e.id for e in held]
    locked = await _rows_read(grown, q["exec_lock_many"], "acme", ids)
    assert {r for r, _ in locked} == {"operations", "executions"}
    assert all(n <= MOST for _, n in locked), locked


async def test_an_inbox_read_reads_the_targets_rows_alone(grown: PostgresStore) -> None:
    await grown.claim_work("acme", "t0", datetime.now(UTC), 2)
    read = await _rows_read(grown, grown.driver.queries["exec_inbox"], "acme", "t0")
    assert {r for r, _ in read} == {"operations", "executions"}
    assert all(n <= MOST for _, n in read), read


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
    assert sorted(r for r, _ in written) == ["executions"] * 2 + ["operations"] * 2
    assert all(n == 1 for _, n in written), written


@pytest.mark.parametrize("name", ["op_get", "op_number", "op_lock", "exec_get", "exec_lock"])
async def test_a_lookup_by_id_reads_its_row_alone(grown: PostgresStore, name: str) -> None:
    [execution] = await grown.find_executions("acme", ExecutionQuery(targets=["t1"], limit=1))
    key = execution.id if name.startswith("exec") else execution.operation_id
    read = await _rows_read(grown, grown.driver.queries[name], "acme", key)
    assert read and all(n == 1 for _, n in read), read


async def test_a_batch_of_creates_looks_up_each_target_and_key(
    grown: PostgresStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The create batch's statement and the read of its numbers, as a create runs them
    (on a connection of their own, outside a transaction)."""
    found: list[dict[str, Any]] = []

    @asynccontextmanager
    async def explained() -> AsyncIterator[_Conn]:
        async with grown.driver.pool.acquire() as conn, _explaining(conn) as plans:
            yield _Conn(conn)
        found.extend(plans)

    monkeypatch.setattr(grown._creates, "_statement", explained)
    await Operations(grown).create(
        "acme", CreateOperation(kind="test", targets=["t5", "t7"], idempotency_key="k")
    )
    read = _read(found)
    assert {r for r, _ in read} == {"operations", "targets"}, read
    assert all(n <= MOST for _, n in read), read


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
    renumber = (
        "INSERT INTO event_appends (tenant_id, numbering, types, operation_ids, execution_ids,"
        " target_ids, states, progresses, datas, created_ats)"
        " VALUES ('acme', $1, '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}')"
    )
    plans = []
    try:
        async with store.driver.pool.acquire() as conn:
            [config] = await conn.fetch(
                "SELECT proconfig FROM pg_proc WHERE proname = 'opstatus_append_at_commit'"
            )
            for _ in range(3):  # the deferred trigger, brought forward from COMMIT
                plans += await _run_plans(
                    conn, renumber, view.operation.id, first="SET CONSTRAINTS ALL IMMEDIATE"
                )
    finally:
        await store.close()
    assert "plan_cache_mode=force_generic_plan" in config["proconfig"]
    numbering = [
        node for p in plans if p["Query Text"].lstrip().startswith("UPDATE operations")
        for node in _scans(p["Plan"])
    ]  # fmt: skip
    assert numbering and {node.get("Index Name") for node in numbering} == {"operations_pkey"}
