"""The statements a claim, a report and their write send find their rows by key: none
reads the tenant's other operations or executions (PostgreSQL, EXPLAIN ANALYZE).

A statement whose ids come only inside a JSON document, or from a subquery, leaves the
planner no estimate of how few rows it touches: it may scan all of a tenant's rows and
still answer correctly, only slower as the tenant grows (a first ``state_write`` did,
and P3 ran 25 % slower for it). These tests read the plans as run, on a tenant of
OPERATIONS operations with its statistics gathered.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from opstatus.domain import changes
from opstatus.domain.records import ExecutionQuery, Tenant
from opstatus.service.operations import Operations
from opstatus.service.requests import CreateOperation
from opstatus.store import pgflush
from opstatus.store.postgres import PostgresStore

pytestmark = pytest.mark.postgres

OPERATIONS = 400  #: the tenant's size: a scan of it reads hundreds of rows
MOST = 8  #: rows a scan of operations or executions may read: the statement's own


@pytest.fixture
async def grown(pg_url: str) -> AsyncIterator[PostgresStore]:
    store = PostgresStore(pg_url, min_size=1, max_size=2)
    await store.open()
    await store.migrate()
    await store.create_tenant(Tenant(id="acme", name="Acme", created_at=datetime.now(UTC)))
    ops = Operations(store, register_targets=True)
    for i in range(OPERATIONS):
        await ops.create("acme", CreateOperation(kind="test", targets=[f"t{i % 4}"]))
    async with store.driver.write() as tx:  # the statistics autovacuum gathers in time
        await tx.execute("ANALYZE operations, executions")
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
