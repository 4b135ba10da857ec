"""Random walks over real stores: the stored aggregates always match the executions."""

from __future__ import annotations

import random
import sqlite3
from typing import Any

import pytest

from opstatus.domain import derive, errors
from opstatus.domain.records import ExecutionUpdate
from opstatus.domain.states import State
from opstatus.service.operations import Operations
from opstatus.service.requests import CreateOperation
from opstatus.store.port import Store
from opstatus.store.sqlite import SqliteStore
from tests.conftest import TENANT

AGENT_STATES = [State.ACKNOWLEDGED, State.IN_PROGRESS, State.SUCCEEDED, State.FAILED]


@pytest.mark.parametrize("seed", [1, 2])
async def test_random_walk_keeps_operation_consistent(store: Store, seed: int) -> None:
    rng = random.Random(seed)
    ops = Operations(store, register_targets=True)
    view, _ = await ops.create(
        TENANT, CreateOperation(kind="walk", targets=[f"t{i}" for i in range(6)])
    )
    op_id = view.operation.id
    last_version = view.operation.version
    for _ in range(60):
        executions = await ops.executions(TENANT, op_id)
        pick = rng.choice(executions)
        action = rng.random()
        try:
            if action < 0.25:
                await ops.claim_inbox(TENANT, pick.target)
            elif action < 0.8:
                update = ExecutionUpdate(
                    state=rng.choice(AGENT_STATES),
                    progress=rng.choice([None, rng.uniform(0, 100)]),
                    error="e" if rng.random() < 0.5 else None,
                )
                await ops.update_execution(TENANT, pick.id, update)
            elif action < 0.9:
                await ops.retry_execution(TENANT, pick.id)
            else:
                await ops.cancel(TENANT, op_id, force=rng.random() < 0.5)
        except errors.DomainError:
            pass  # refused steps change nothing; checked below all the same
        operation = (await ops.get(TENANT, op_id)).operation
        executions = await ops.executions(TENANT, op_id)
        expected = derive.summarize(operation, executions)
        assert dict(operation.counts) == dict(expected.counts)
        assert operation.state is expected.state
        assert operation.progress_sum == pytest.approx(expected.progress_sum)
        assert operation.version >= last_version
        last_version = operation.version


def test_sqlite_durability_settings(tmp_path: object) -> None:
    import asyncio

    async def pragmas(**kw: Any) -> tuple[str, int]:
        store = SqliteStore(f"{tmp_path}/s.db", **kw)
        await store.open()
        try:
            await store.migrate()
            async with store.driver.read() as tx:
                mode = await tx.fetchrow("PRAGMA journal_mode")
            assert store.driver._wconn is not None
            sync = store.driver._wconn.execute("PRAGMA synchronous").fetchone()
        finally:
            await store.close()
        assert mode is not None and sync is not None
        return next(iter(mode.values())), next(iter(sync.values()))

    assert asyncio.run(pragmas()) == ("wal", 2)  # FULL
    assert asyncio.run(pragmas(synchronous="normal")) == ("wal", 1)
    with pytest.raises(ValueError, match="synchronous"):
        SqliteStore(f"{tmp_path}/x.db", synchronous="sometimes")
    assert sqlite3.sqlite_version_info >= (3, 35)  # RETURNING
