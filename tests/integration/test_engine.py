"""Deadlines and retention on real stores: the engine's sweeps, with a controlled clock."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from opstatus.domain import errors
from opstatus.domain.records import ExecutionUpdate, Rollout, Timeouts
from opstatus.domain.states import OperationState, State
from opstatus.service.engine import Engine
from opstatus.service.operations import Operations
from opstatus.service.requests import CreateOperation
from opstatus.store.port import Store
from tests.conftest import TENANT, make_store

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ops(store: Store, clock: Clock) -> Operations:
    return Operations(store, clock=clock, register_targets=True)


async def create(ops: Operations, *targets: str, **kw: object) -> str:
    view, _ = await ops.create(TENANT, CreateOperation(kind="k", targets=targets, **kw))  # type: ignore[arg-type]
    return view.operation.id


async def states(ops: Operations, op_id: str) -> list[tuple[State, int]]:
    return [(e.state, e.attempt) for e in await ops.executions(TENANT, op_id)]


async def sweep(ops: Operations) -> int:
    return len(await ops.store.sweep(ops.clock(), 100))


async def test_schedule_promotes_at_its_time(ops: Operations, clock: Clock) -> None:
    op_id = await create(ops, "a", schedule_at=T0 + timedelta(seconds=30))
    clock.advance(29)
    assert await sweep(ops) == 0
    assert await states(ops, op_id) == [(State.SCHEDULED, 1)]
    clock.advance(1)
    assert await sweep(ops) == 1
    assert await states(ops, op_id) == [(State.QUEUED, 1)]
    assert (await ops.get(TENANT, op_id)).operation.state is OperationState.QUEUED


async def test_queue_timeout(ops: Operations, clock: Clock) -> None:
    op_id = await create(ops, "a", timeouts=Timeouts(queue=10))
    clock.advance(9.9)
    assert await sweep(ops) == 0
    clock.advance(0.1)
    assert await sweep(ops) == 1
    [execution] = await ops.executions(TENANT, op_id)
    assert execution.state is State.TIMED_OUT
    assert execution.error == "not picked up within 10 s"


async def test_lease_expiry_requeues_until_attempts_are_spent(
    ops: Operations, clock: Clock
) -> None:
    op_id = await create(ops, "a", timeouts=Timeouts(lease=5), retries=1)
    [first] = await ops.claim_inbox(TENANT, "a")  # the agent takes it, then dies
    clock.advance(5)
    assert await sweep(ops) == 1
    assert await states(ops, op_id) == [(State.QUEUED, 2)]
    [second] = await ops.claim_inbox(TENANT, "a")  # the next claim gets the same work
    assert second.execution.id == first.execution.id
    assert second.execution.attempt == 2
    clock.advance(5)
    assert await sweep(ops) == 1
    assert await states(ops, op_id) == [(State.TIMED_OUT, 2)]
    assert await sweep(ops) == 0  # attempts spent: no retry deadline


async def test_acknowledged_work_keeps_its_lease_off(ops: Operations, clock: Clock) -> None:
    op_id = await create(ops, "a", timeouts=Timeouts(lease=5))
    [item] = await ops.claim_inbox(TENANT, "a")
    await ops.update_execution(TENANT, item.execution.id, ExecutionUpdate(state=State.ACKNOWLEDGED))
    clock.advance(60)
    assert await sweep(ops) == 0
    assert await states(ops, op_id) == [(State.ACKNOWLEDGED, 1)]


async def test_run_timeout(ops: Operations, clock: Clock) -> None:
    op_id = await create(ops, "a", timeouts=Timeouts(run=30))
    [item] = await ops.claim_inbox(TENANT, "a")
    await ops.update_execution(
        TENANT, item.execution.id, ExecutionUpdate(state=State.IN_PROGRESS, progress=10)
    )
    clock.advance(29)
    assert await sweep(ops) == 0
    clock.advance(2)
    assert await sweep(ops) == 1
    [execution] = await ops.executions(TENANT, op_id)
    assert (execution.state, execution.error) == (State.TIMED_OUT, "still running after 30 s")


async def test_failed_work_is_retried_after_backoff(ops: Operations, clock: Clock) -> None:
    op_id = await create(ops, "a", retries=2)
    [item] = await ops.claim_inbox(TENANT, "a")
    await ops.update_execution(
        TENANT, item.execution.id, ExecutionUpdate(state=State.FAILED, error="boom")
    )
    clock.advance(0.5)
    assert await sweep(ops) == 0  # backoff after attempt 1: 1 s
    clock.advance(0.5)
    assert await sweep(ops) == 1
    assert await states(ops, op_id) == [(State.QUEUED, 2)]
    [item] = await ops.claim_inbox(TENANT, "a")
    await ops.update_execution(
        TENANT, item.execution.id, ExecutionUpdate(state=State.FAILED, error="boom")
    )
    clock.advance(1.5)
    assert await sweep(ops) == 0  # backoff after attempt 2: 2 s
    clock.advance(0.5)
    assert await sweep(ops) == 1
    [item] = await ops.claim_inbox(TENANT, "a")
    await ops.update_execution(
        TENANT, item.execution.id, ExecutionUpdate(state=State.FAILED, error="boom")
    )
    clock.advance(3600)
    assert await sweep(ops) == 0  # 1 + 2 retries spent
    assert await states(ops, op_id) == [(State.FAILED, 3)]
    assert (await ops.get(TENANT, op_id)).operation.state is OperationState.FAILED


async def test_retention_purges_and_leaves_tombstones(ops: Operations, clock: Clock) -> None:
    old = await create(ops, "a")
    await ops.cancel(TENANT, old)
    running = await create(ops, "b")
    clock.advance(100)
    recent = await create(ops, "c")
    await ops.cancel(TENANT, recent)
    engine = Engine(ops, retention=50)
    assert await engine.purge() == 1
    with pytest.raises(errors.Gone):
        await ops.get(TENANT, old)
    with pytest.raises(errors.Gone):
        await ops.get_by_number(TENANT, 1)
    assert (await ops.get(TENANT, running)).operation.state is OperationState.QUEUED
    assert (await ops.get(TENANT, recent)).operation.state is OperationState.CANCELLED
    events = await ops.events(TENANT)
    assert events[-1].type == "operation.purged"
    assert all(e.operation_id != old or e.type == "operation.purged" for e in events)
    with pytest.raises(errors.NotFound):
        await ops.get(TENANT, "op_never_was")


async def test_replicas_apply_each_deadline_once(
    store: Store, store_url: str, clock: Clock
) -> None:
    ops = Operations(store, clock=clock, register_targets=True)
    targets = [f"t{i}" for i in range(200)]
    op_id = await create(ops, *targets, timeouts=Timeouts(queue=1))
    clock.advance(2)
    replicas = [make_store(store_url) for _ in range(4)]
    for r in replicas:
        await r.open()
    try:
        swept = await asyncio.gather(*(r.sweep(clock.now, 25) for r in replicas for _ in range(4)))
        rest = await store.sweep(clock.now, 1000)
    finally:
        for r in replicas:
            await r.close()
    ids = [e.id for batch in [*swept, rest] for e in batch]
    assert len(ids) == len(set(ids)) == 200
    view = await ops.get(TENANT, op_id)
    assert view.operation.counts["timed_out"] == 200
    events = await ops.events(TENANT, limit=1000)
    assert sum(e.type == "execution.timed_out" for e in events) == 200


async def test_engine_tick_wakes_waiters(ops: Operations, clock: Clock) -> None:
    op_id = await create(ops, "a", schedule_at=T0 + timedelta(seconds=1))
    from opstatus.service import notifier

    inbox = ops.notifier.subscribe(notifier.inbox_key(TENANT, "a"))
    clock.advance(1)
    assert await Engine(ops).tick() == 1
    assert inbox.done()
    assert await states(ops, op_id) == [(State.QUEUED, 1)]


async def test_executions_of_purged_operations_are_gone(ops: Operations, clock: Clock) -> None:
    op_id = await create(ops, "a")
    [execution] = await ops.executions(TENANT, op_id)
    await ops.cancel(TENANT, op_id)
    clock.advance(10)
    assert await Engine(ops, retention=5).purge() == 1
    with pytest.raises(errors.Gone):
        await ops.get_execution(TENANT, execution.id)
    with pytest.raises(errors.Gone):
        await ops.update_execution(TENANT, execution.id, ExecutionUpdate(progress=1))
    with pytest.raises(errors.NotFound):
        await ops.get_execution("other", execution.id)
    with pytest.raises(errors.NotFound):
        await ops.get_execution(TENANT, "ex_never_was")


async def test_rollout_caps_dispatches_per_minute(ops: Operations, clock: Clock) -> None:
    targets = [f"t{i}" for i in range(8)]
    op_id = await create(ops, *targets, rollout=Rollout(max_per_minute=3))

    async def claim_all() -> int:  # newly dispatched only (held work is not counted)
        return sum([len(await ops.store.claim(TENANT, t, clock.now, 10)) for t in targets])

    assert await claim_all() == 3
    clock.advance(30)
    assert await claim_all() == 0  # still within the same minute
    clock.advance(31)
    assert await claim_all() == 3
    clock.advance(61)
    assert await claim_all() == 2
    view = await ops.get(TENANT, op_id)
    assert view.operation.counts["dispatched"] == 8
    assert view.operation.rollout.max_per_minute == 3


async def test_rollout_cap_holds_under_concurrent_claimers(
    store: Store, store_url: str, clock: Clock
) -> None:
    ops = Operations(store, clock=clock, register_targets=True)
    targets = [f"t{i}" for i in range(40)]
    op_id = await create(ops, *targets, rollout=Rollout(max_per_minute=5))
    replicas = [make_store(store_url) for _ in range(4)]
    for r in replicas:
        await r.open()
    try:
        batches = await asyncio.gather(
            *(replicas[i % 4].claim(TENANT, t, clock.now, 10) for i, t in enumerate(targets))
        )
    finally:
        for r in replicas:
            await r.close()
    assert sum(len(b) for b in batches) == 5
    assert (await ops.get(TENANT, op_id)).operation.counts["dispatched"] == 5


async def test_rollout_aborts_after_failures(ops: Operations, clock: Clock) -> None:
    op_id = await create(ops, "a", "b", "c", "d", rollout=Rollout(abort_after_failures=2))
    for target in ("a", "b"):
        [item] = await ops.claim_inbox(TENANT, target)
        await ops.update_execution(
            TENANT, item.execution.id, ExecutionUpdate(state=State.FAILED, error="bad image")
        )
    view = await ops.get(TENANT, op_id)
    assert view.operation.counts["failed"] == 2
    assert view.operation.counts["cancelled"] == 2
    assert view.operation.state is OperationState.FAILED
    events = await ops.events(TENANT, operation_id=op_id, limit=100)
    cancelled = [e for e in events if e.type == "execution.cancelled"]
    assert len(cancelled) == 2
    assert all("aborted: 2 executions failed" in e.data["reason"] for e in cancelled)


async def test_rollout_abort_counts_timeouts_from_the_engine(ops: Operations, clock: Clock) -> None:
    op_id = await create(
        ops, "a", "b", "c", timeouts=Timeouts(lease=5), rollout=Rollout(abort_after_failures=1)
    )
    await ops.claim_inbox(TENANT, "a")  # the agent dies: its lease runs out
    clock.advance(6)
    await Engine(ops).tick()
    counts = (await ops.get(TENANT, op_id)).operation.counts
    assert (counts["timed_out"], counts["cancelled"]) == (1, 2)


# heartbeats --------------------------------------------------------------------------
async def test_silent_started_work_is_queued_again_then_times_out(
    ops: Operations, clock: Clock
) -> None:
    op_id = await create(ops, "a", timeouts=Timeouts(heartbeat=10), retries=1)
    [item] = await ops.claim_inbox(TENANT, "a")
    ex_id = item.execution.id
    await ops.update_execution(TENANT, ex_id, ExecutionUpdate(state=State.ACKNOWLEDGED))
    execution = await ops.get_execution(TENANT, ex_id)
    assert execution.lease_expires_at == T0 + timedelta(seconds=10)  # the deadline shows
    clock.advance(6)
    update = ExecutionUpdate(state=State.IN_PROGRESS, progress=30)
    await ops.update_execution(TENANT, ex_id, update)  # a report renews it
    clock.advance(6)
    assert await sweep(ops) == 0
    assert await states(ops, op_id) == [(State.IN_PROGRESS, 1)]
    clock.advance(4)  # 10 s since the last report: the agent went silent
    assert await sweep(ops) == 1
    [requeued] = await ops.executions(TENANT, op_id)
    assert (requeued.state, requeued.attempt, requeued.progress) == (State.QUEUED, 2, 0.0)
    assert requeued.lease_expires_at is None
    [again] = await ops.claim_inbox(TENANT, "a")
    assert (again.execution.id, again.execution.attempt) == (ex_id, 2)
    await ops.update_execution(TENANT, ex_id, ExecutionUpdate(state=State.IN_PROGRESS))
    clock.advance(10)
    assert await sweep(ops) == 1  # no attempts left
    [timed_out] = await ops.executions(TENANT, op_id)
    assert timed_out.state is State.TIMED_OUT
    assert timed_out.error == "the agent went silent: no report for 10 s on attempt 2"
    assert (await ops.get(TENANT, op_id)).operation.state is OperationState.FAILED


async def test_heartbeat_defaults_to_the_service_setting(store: Store, clock: Clock) -> None:
    ops = Operations(store, clock=clock, register_targets=True, heartbeat=20)
    op_id = await create(ops, "a")
    assert (await ops.get(TENANT, op_id)).operation.timeouts.heartbeat == 20
    named = await create(ops, "a", timeouts=Timeouts(heartbeat=5))
    assert (await ops.get(TENANT, named)).operation.timeouts.heartbeat == 5
    [item, _] = await ops.claim_inbox(TENANT, "a")
    await ops.update_execution(TENANT, item.execution.id, ExecutionUpdate(state=State.IN_PROGRESS))
    clock.advance(19)
    assert await sweep(ops) == 0
    clock.advance(1)
    assert await sweep(ops) == 1
    assert (await ops.get_execution(TENANT, item.execution.id)).error == (
        "the agent went silent: no report for 20 s on attempt 1"
    )


async def test_run_timeout_wins_over_a_later_heartbeat(ops: Operations, clock: Clock) -> None:
    op_id = await create(ops, "a", timeouts=Timeouts(run=5, heartbeat=10), retries=3)
    [item] = await ops.claim_inbox(TENANT, "a")
    await ops.update_execution(TENANT, item.execution.id, ExecutionUpdate(state=State.IN_PROGRESS))
    clock.advance(5)
    assert await sweep(ops) == 1
    [execution] = await ops.executions(TENANT, op_id)
    assert (execution.state, execution.error) == (State.TIMED_OUT, "still running after 5 s")
