"""Is it stuck? On real stores with a hand-moved clock: queue depth and age, time per
state, the stall sweep (once per attempt), webhook lag and ``as_of`` from the log."""

from __future__ import annotations

from datetime import timedelta

import pytest

from opstatus.domain import errors, ids, watch
from opstatus.domain.records import ExecutionUpdate
from opstatus.domain.states import OperationState, State
from opstatus.domain.webhooks import Webhook
from opstatus.service.engine import Engine
from opstatus.service.operations import Operations
from opstatus.service.requests import CreateOperation
from opstatus.store.port import Store
from tests.conftest import TENANT
from tests.integration.test_engine import T0, Clock, clock, ops

__all__ = ["clock", "ops"]  # the engine tests' fixtures: a hand-moved clock and its service


async def create(ops: Operations, kind: str, *targets: str) -> str:
    view, _ = await ops.create(TENANT, CreateOperation(kind=kind, targets=targets))
    return view.operation.id


async def report(ops: Operations, execution_id: str, state: State, **fields: object) -> None:
    await ops.update_execution(TENANT, execution_id, ExecutionUpdate(state=state, **fields))  # type: ignore[arg-type]


async def test_backlog_counts_unfinished_work_per_kind_and_state(
    ops: Operations, clock: Clock
) -> None:
    await create(ops, "deploy", "a", "b")
    clock.advance(10)
    await create(ops, "deploy", "c")
    await create(ops, "reboot", "a")
    [item] = await ops.claim_inbox(TENANT, "c")
    await report(ops, item.execution.id, State.SUCCEEDED)  # finished: not counted
    backlog = {(b.kind, b.state): b for b in await ops.store.backlog()}
    assert {k: b.count for k, b in backlog.items()} == {
        ("deploy", State.QUEUED): 2,
        ("reboot", State.QUEUED): 1,
    }
    assert backlog[("deploy", State.QUEUED)].oldest_queued_at == T0
    assert backlog[("reboot", State.QUEUED)].oldest_queued_at == T0 + timedelta(seconds=10)


async def test_every_state_change_reports_the_time_spent_in_the_state_left(
    ops: Operations, store: Store, clock: Clock
) -> None:
    seen: list[tuple[str, State, float]] = []
    store.on_transition = lambda kind, state, seconds: seen.append((kind, state, seconds))
    await create(ops, "deploy", "a")
    clock.advance(5)
    [item] = await ops.claim_inbox(TENANT, "a")  # 5 s queued
    clock.advance(2)
    await report(ops, item.execution.id, State.IN_PROGRESS)  # 2 s dispatched
    clock.advance(1)
    await report(ops, item.execution.id, State.IN_PROGRESS, progress=50.0)  # no change
    clock.advance(3)
    await report(ops, item.execution.id, State.SUCCEEDED)  # 6 s since the dispatch
    assert seen == [
        ("deploy", State.QUEUED, 5.0),
        ("deploy", State.DISPATCHED, 2.0),
        ("deploy", State.IN_PROGRESS, 6.0),
    ]


async def test_held_work_far_past_its_usual_time_is_marked_stalled_once(
    ops: Operations, clock: Clock
) -> None:
    engine = Engine(ops, stall_rule=watch.StallRule(factor=3.0, floor=60.0))
    stalled: list[str] = []
    engine.on_stall = stalled.append
    # the kind's history: one run of 100 s, so 300 s is "far longer"
    await create(ops, "deploy", "a")
    [item] = await ops.claim_inbox(TENANT, "a")
    clock.advance(100)
    await report(ops, item.execution.id, State.SUCCEEDED)
    op_id = await create(ops, "deploy", "b")
    [item] = await ops.claim_inbox(TENANT, "b")
    await report(ops, item.execution.id, State.IN_PROGRESS)
    clock.advance(299)
    assert await engine.mark_stalls() == 0
    clock.advance(2)
    assert await engine.mark_stalls() == 1
    clock.advance(600)
    assert await engine.mark_stalls() == 0  # once per attempt
    assert stalled == ["deploy"]
    [event] = [e for e in await ops.events(TENANT, operation_id=op_id) if e.type == watch.STALLED]
    assert event.execution_id == item.execution.id
    assert event.state == "in_progress"
    assert event.data["usual_seconds"] == 100.0
    assert event.data["running_seconds"] == 301.0
    # the event changes nothing about the execution
    assert (
        await ops.get_execution(TENANT, item.execution.id)
    ).version == item.execution.version + 1


async def test_a_kind_without_history_stalls_after_the_rule_says(
    ops: Operations, clock: Clock
) -> None:
    engine = Engine(ops, stall_rule=watch.StallRule(floor=60.0, without_history=600.0))
    await create(ops, "new-kind", "a")
    await ops.claim_inbox(TENANT, "a")
    clock.advance(599)
    assert await engine.mark_stalls() == 0
    clock.advance(2)
    assert await engine.mark_stalls() == 1


async def test_webhook_lag_is_the_age_of_the_oldest_event_still_to_deliver(
    ops: Operations, store: Store, clock: Clock
) -> None:
    hooks = store.webhooks()
    assert await hooks.oldest_undelivered() is None
    await hooks.create_webhook(
        Webhook(id=ids.new_ids("wh", 1)[0], tenant=TENANT, url="https://example.com/h",
                events=["*"], secret="s" * 32, created_at=T0)
    )  # fmt: skip
    assert await hooks.oldest_undelivered() is None  # nothing after its cursor
    clock.advance(7)
    await create(ops, "deploy", "a")
    assert await hooks.oldest_undelivered() == T0 + timedelta(seconds=7)


async def test_as_of_rebuilds_the_operation_from_its_events(ops: Operations, clock: Clock) -> None:
    op_id = await create(ops, "deploy", "a", "b")
    clock.advance(10)
    [item] = await ops.claim_inbox(TENANT, "a")
    clock.advance(10)
    await report(ops, item.execution.id, State.IN_PROGRESS, progress=40.0)
    clock.advance(10)
    await report(ops, item.execution.id, State.SUCCEEDED)
    [other] = await ops.claim_inbox(TENANT, "b")
    clock.advance(10)
    await report(ops, other.execution.id, State.FAILED, error="disk full")
    now = await ops.get(TENANT, op_id)
    assert now.operation.state is OperationState.FAILED

    def states(view: object) -> dict[str, tuple[str, float]]:
        return {e.target: (str(e.state), e.progress) for e in view.executions}  # type: ignore[attr-defined]

    created = await ops.as_of(TENANT, op_id, T0 + timedelta(seconds=5))
    assert created.operation.state is OperationState.QUEUED
    assert states(created) == {"a": ("queued", 0.0), "b": ("queued", 0.0)}
    assert created.operation.version == 1
    running = await ops.as_of(TENANT, op_id, T0 + timedelta(seconds=25))
    assert running.operation.state is OperationState.RUNNING
    assert states(running) == {"a": ("in_progress", 40.0), "b": ("queued", 0.0)}
    assert running.operation.progress == 20.0
    assert running.operation.counts["in_progress"] == 1
    assert running.operation.completed_at is None
    finished = await ops.as_of(TENANT, op_id, now.operation.updated_at)
    assert finished.operation.state is now.operation.state
    assert finished.operation.counts == now.operation.counts
    assert finished.operation.version == now.operation.version
    assert (
        finished.operation.error == now.operation.error == "1 of 2 executions failed: b: disk full"
    )
    with pytest.raises(errors.Invalid, match="before the operation was created"):
        await ops.as_of(TENANT, op_id, T0 - timedelta(seconds=1))
    with pytest.raises(errors.Invalid, match="future"):
        await ops.as_of(TENANT, op_id, clock() + timedelta(seconds=1))
