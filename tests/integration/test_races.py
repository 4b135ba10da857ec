"""Concurrency on real databases: claim race, version race, bulk fan-out."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import pytest

from opstatus.domain import errors
from opstatus.domain.records import ExecutionUpdate
from opstatus.domain.states import State
from opstatus.service.operations import Operations
from opstatus.service.requests import CreateOperation
from opstatus.store.port import Store
from opstatus.store.sqlstore import SqlStore
from tests.conftest import TENANT, make_store

pytestmark = pytest.mark.slow


@asynccontextmanager
async def many_stores(url: str, count: int, pool: int) -> AsyncIterator[list[Store]]:
    """``count`` independent adapters on one database: separate connections (and,
    for SQLite, separate writer threads), as separate processes would have."""
    stores = [make_store(url, pool=pool) for _ in range(count)]
    for s in stores:
        await s.open()
    try:
        yield stores
    finally:
        for s in stores:
            await s.close()


async def test_claim_race_each_execution_exactly_once(store: Store, store_url: str) -> None:
    ops = Operations(store, register_targets=True)
    targets = [f"t{i:03d}" for i in range(100)]
    for _ in range(100):  # 100 operations x 100 targets = 10,000 queued executions
        await ops.create(TENANT, CreateOperation(kind="race", targets=targets))
    claimed: list[str] = []

    async def claimer(s: Store, seed: int) -> None:
        order = list(targets)
        random.Random(seed).shuffle(order)
        for target in order:
            while batch := await s.claim(TENANT, target, datetime.now(UTC), 10):
                claimed.extend(e.id for e in batch)

    async with many_stores(store_url, 5, pool=10) as stores:
        await asyncio.gather(*(claimer(stores[i % 5], i) for i in range(50)))

    assert len(claimed) == 10_000
    assert len(set(claimed)) == 10_000
    page = await ops.find(TENANT, _query(limit=100))
    assert all(v.operation.counts["dispatched"] == 100 for v in page.items)
    assert len(page.items) == 100
    events = await store.events_after(TENANT, 0, limit=100_000)
    assert sum(e.type == "execution.dispatched" for e in events) == 10_000
    assert [e.seq for e in events] == list(range(1, len(events) + 1))


async def test_readers_never_see_a_seq_before_the_ones_below_it(
    store: Store, store_url: str
) -> None:
    """Writers in separate adapters commit concurrently while a reader follows
    ``events_after``: every page must continue exactly where the last one ended. A
    seq handed out in one order and committed in another would show up as a gap the
    reader skips forever (and numbers, handed out the same way, stay unique)."""
    done = asyncio.Event()
    seen: list[int] = []

    async def writer(s: Store, n: int) -> None:
        ops = Operations(s, register_targets=True)
        for i in range(15):
            await ops.create(TENANT, CreateOperation(kind="order", targets=[f"w{n}-{i % 3}"]))

    async def reader() -> None:
        while True:
            finished = done.is_set()
            page = await store.events_after(TENANT, seen[-1] if seen else 0, limit=1000)
            seen.extend(e.seq for e in page)
            if finished and not page:
                return
            await asyncio.sleep(0)

    async with many_stores(store_url, 4, pool=5) as stores:
        following = asyncio.ensure_future(reader())
        await asyncio.gather(*(writer(stores[i % 4], i) for i in range(12)))
        done.set()
        await following

    assert seen == list(range(1, 12 * 15 + 1))
    page = await Operations(store, register_targets=True).find(TENANT, _query(limit=200))
    numbers = sorted(v.operation.number for v in page.items if v.operation.number)
    assert numbers == list(range(1, 12 * 15 + 1))


async def test_version_race_one_winner(store: Store, store_url: str) -> None:
    ops = Operations(store, register_targets=True)
    await ops.create(TENANT, CreateOperation(kind="race", targets=["a"]))
    [item] = await ops.claim_inbox(TENANT, "a")
    version = item.execution.version

    async def update(s: Store, n: int) -> Any:
        try:
            return await s.update_execution(
                TENANT,
                item.execution.id,
                ExecutionUpdate(state=State.IN_PROGRESS, progress=n, expected_version=version),
                datetime.now(UTC),
            )
        except errors.VersionMismatch as exc:
            return exc

    async with many_stores(store_url, 4, pool=5) as stores:
        results = await asyncio.gather(*(update(stores[n % 4], n) for n in range(20)))

    winners = [r for r in results if not isinstance(r, Exception)]
    losers = [r for r in results if isinstance(r, errors.VersionMismatch)]
    assert len(winners) == 1 and len(losers) == 19
    assert all(loser.current.version == version + 1 for loser in losers)
    assert all(loser.current.progress == winners[0].progress for loser in losers)
    current = await store.get_execution(TENANT, item.execution.id)
    assert current.version == version + 1


async def test_fan_out_10000_targets_is_one_bulk_write(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    assert isinstance(store, SqlStore)
    driver = store._d
    calls: list[int] = []
    original = driver.bulk_insert

    async def counting(tx: Any, table: str, columns: Sequence[str], rows: Any) -> None:
        calls.append(len(rows))
        await original(tx, table, columns, rows)

    driver.bulk_insert = counting  # type: ignore[method-assign]
    ops = Operations(store, register_targets=True)
    targets = [f"node-{i:05d}" for i in range(10_000)]
    started = time.perf_counter()
    view, _ = await ops.create(TENANT, CreateOperation(kind="fanout", targets=targets))
    elapsed = time.perf_counter() - started
    with capsys.disabled():
        print(f"\n[{store.name}] fan-out to 10,000 targets: {elapsed * 1000:.0f} ms")
    assert calls == [10_000]
    assert view.operation.total == 10_000
    assert view.operation.counts["queued"] == 10_000
    executions = await ops.executions(TENANT, view.operation.id)
    assert sorted(e.target for e in executions) == targets
    events = await store.events_after(TENANT, 0, limit=10)
    assert [e.type for e in events] == ["operation.created"]


def _query(**kw: Any) -> Any:
    from opstatus.domain.records import OperationQuery

    return OperationQuery(**kw)
