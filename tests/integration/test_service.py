"""Service behaviour (``Operations``) the store contract suite does not cover: request
validation, cursors and page bounds, notifications, the pace cache, and the store and
the service agreeing after mixed outcomes. Every test runs on a real SQLite file and
on real PostgreSQL (the ``store`` fixture)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from opstatus.domain import derive, errors
from opstatus.domain.records import ExecutionUpdate, OperationQuery, Timeouts
from opstatus.domain.states import OperationState, State
from opstatus.service import notifier as notify
from opstatus.service.operations import Limits, Operations
from opstatus.service.requests import CreateOperation
from opstatus.store.port import Store
from tests.conftest import TENANT as T

START = datetime(2026, 1, 1, tzinfo=UTC)


class Clock:
    """A clock that moves one second on every reading, so every change has its own time."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def service(store: Store, clock: Clock) -> Operations:
    return Operations(
        store, clock=clock, limits=Limits(max_page=100, max_claim=20), register_targets=True
    )


async def create(svc: Operations, *targets: str, tenant: str = T, **kw: Any) -> str:
    kw.setdefault("kind", "test")
    view, created = await svc.create(tenant, CreateOperation(targets=targets, **kw))
    assert created
    return view.operation.id


async def report(svc: Operations, execution_id: str, **kw: Any) -> None:
    await svc.update_execution(T, execution_id, ExecutionUpdate(**kw))


async def op_state(svc: Operations, op_id: str) -> OperationState:
    return (await svc.get(T, op_id)).operation.state


# create ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("request_", "parameter"),
    [
        (CreateOperation(kind="", targets=["a"]), "kind"),
        (CreateOperation(kind="k" * 201, targets=["a"]), "kind"),
        (CreateOperation(kind="k"), "targets"),
        (CreateOperation(kind="k", targets=[""]), "targets"),
        (CreateOperation(kind="k", targets=["a"], retries=-1), "retries"),
        (CreateOperation(kind="k", targets=["a"], timeouts=Timeouts(lease=0)), "timeouts.lease"),
    ],
)
async def test_create_validation(
    service: Operations, store: Store, request_: CreateOperation, parameter: str
) -> None:
    with pytest.raises(errors.Invalid) as caught:
        await service.create(T, request_)
    assert caught.value.context["parameter"] == parameter
    assert await store.list_operations(T, OperationQuery()) == []


async def test_an_unknown_group_is_not_found(service: Operations, store: Store) -> None:
    with pytest.raises(errors.NotFound) as caught:
        await service.create(T, CreateOperation(kind="k", groups=["nope"]))
    assert caught.value.context["parameter"] == "groups"
    assert await store.list_operations(T, OperationQuery()) == []


async def test_empty_group_is_no_target(service: Operations) -> None:
    await service.put_group(T, "empty", [])
    with pytest.raises(errors.Conflict) as caught:
        await service.create(T, CreateOperation(kind="k", groups=["empty"]))
    assert caught.value.context["parameter"] == "groups"


async def test_schedule_at_in_the_past_queues_at_once(service: Operations, clock: Clock) -> None:
    op_id = await create(service, "a", schedule_at=clock.now - timedelta(hours=1))
    assert await op_state(service, op_id) is OperationState.QUEUED
    assert len(await service.claim_inbox(T, "a")) == 1


async def test_unknown_tenant(service: Operations) -> None:
    with pytest.raises(errors.NotFound):
        await create(service, "a", tenant="nobody")


# cursors and page bounds ----------------------------------------------------------
@pytest.mark.parametrize("cursor", ["!!!", "bm90LW91cnM", "bjphYmM", ""])
async def test_bad_cursor(service: Operations, cursor: str) -> None:
    await create(service, "a")
    with pytest.raises(errors.Invalid) as caught:
        await service.find(T, OperationQuery(), cursor)
    assert caught.value.context["parameter"] == "cursor"


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        (OperationQuery(limit=101), "limit"),
        (OperationQuery(limit=0), "limit"),
        (OperationQuery(offset=-1), "offset"),
    ],
)
async def test_page_bounds(service: Operations, query: OperationQuery, parameter: str) -> None:
    with pytest.raises(errors.Invalid) as caught:
        await service.find(T, query)
    assert caught.value.context["parameter"] == parameter


# inbox and notifications ------------------------------------------------------------
async def test_claim_limit_is_bounded(service: Operations) -> None:
    await create(service, "a")
    with pytest.raises(errors.Invalid) as caught:
        await service.claim_inbox(T, "a", limit=21)
    assert caught.value.context["parameter"] == "limit"
    assert len(await service.claim_inbox(T, "a", limit=20)) == 1


async def test_notifier_wakes_waiters(service: Operations, clock: Clock) -> None:
    n = service.notifier
    inbox, events = n.subscribe(notify.inbox_key(T, "a")), n.subscribe(notify.events_key(T))
    elsewhere = n.subscribe(notify.inbox_key("other", "a"))
    op_id = await create(service, "a")
    assert inbox.done() and events.done() and not elsewhere.done()

    watch = n.subscribe(notify.operation_key(T, op_id))
    [item] = await service.claim_inbox(T, "a")
    assert watch.done()
    watch = n.subscribe(notify.operation_key(T, op_id))
    await report(service, item.execution.id, state=State.FAILED, error="boom")
    assert watch.done()
    inbox = n.subscribe(notify.inbox_key(T, "a"))
    await service.retry_execution(T, item.execution.id)
    assert inbox.done()  # queued again: the agent should look

    inbox = n.subscribe(notify.inbox_key(T, "b"))
    await create(service, "b", schedule_at=clock.now + timedelta(hours=1))
    assert not inbox.done()  # nothing to do yet
    elsewhere.cancel()
    inbox.cancel()


# lifecycle ------------------------------------------------------------------------
async def test_lease_lost_requeues(service: Operations) -> None:
    await create(service, "a")
    [item] = await service.claim_inbox(T, "a")
    await report(service, item.execution.id, state=State.QUEUED)
    execution = await service.get_execution(T, item.execution.id)
    assert (execution.state, execution.attempt, execution.lease_expires_at) == (
        State.QUEUED,
        2,
        None,
    )


# the store and the service agree ----------------------------------------------------
async def test_store_and_service_agree_after_mixed_outcomes(
    service: Operations, store: Store
) -> None:
    op_id = await create(service, "a", "b", "c", "d", "e")

    async def check(expected: OperationState) -> None:
        view = await service.get(T, op_id)
        stored = await store.get_operation(T, op_id)
        executions = await store.list_executions(T, op_id)
        recomputed = derive.summarize(stored, executions)
        assert view.operation == stored
        assert list(view.executions or []) == executions
        assert stored.state is recomputed.state is expected
        assert dict(stored.counts) == dict(recomputed.counts)
        assert stored.progress_sum == pytest.approx(recomputed.progress_sum)
        [listed] = (await service.find(T, OperationQuery(ids=[op_id]))).items
        assert listed.operation == stored

    items = {t: (await service.claim_inbox(T, t))[0].execution.id for t in "abcd"}
    await report(service, items["a"], state=State.SUCCEEDED)
    await report(service, items["b"], state=State.IN_PROGRESS, progress=30)
    await report(service, items["c"], state=State.TIMED_OUT, error="late")
    await check(OperationState.RUNNING)
    await report(service, items["b"], state=State.FAILED, error="boom")
    await report(service, items["d"], state=State.ACKNOWLEDGED)
    await service.cancel(T, op_id)  # d (acknowledged) and e (queued)
    await check(OperationState.FAILED)
    counts = (await store.get_operation(T, op_id)).counts
    assert {k: v for k, v in counts.items() if v} == {
        "succeeded": 1,
        "failed": 1,
        "timed_out": 1,
        "cancelled": 2,
    }
    await service.retry_execution(T, items["b"])
    await service.retry_execution(T, items["c"])
    await check(OperationState.RUNNING)
    for target in "bc":
        [item] = await service.claim_inbox(T, target)
        await report(service, item.execution.id, state=State.SUCCEEDED)
    await check(OperationState.CANCELLED)


async def test_typical_duration_is_the_median_and_kept_for_a_while(
    service: Operations, clock: Clock
) -> None:
    assert await service.typical_duration(T, "test") is None
    op_id = await create(service, "a")
    [item] = await service.claim_inbox(T, "a")
    await report(service, item.execution.id, state=State.SUCCEEDED)
    finished = (await service.get(T, op_id)).operation
    assert finished.completed_at is not None
    took = (finished.completed_at - finished.created_at).total_seconds()
    # within pace_seconds of the first answer, the kept one (None) is reused
    assert await service.typical_duration(T, "test") is None
    clock.now += timedelta(seconds=service.limits.pace_seconds)
    assert await service.typical_duration(T, "test") == took
    assert await service.typical_duration(T, "other-kind") is None
