"""The service layer (``Operations``) over the in-memory store: fast, no database."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from opstatus.domain import derive, errors
from opstatus.domain.records import (
    ExecutionUpdate,
    Group,
    OperationQuery,
    Target,
    Tenant,
    Timeouts,
)
from opstatus.domain.states import OperationState, State
from opstatus.service import notifier as notify
from opstatus.service.operations import Limits, Operations
from opstatus.service.requests import CreateOperation
from opstatus.store import queries
from opstatus.store.memory import MemoryStore

T = "acme"
START = datetime(2026, 1, 1, tzinfo=UTC)


class Clock:
    """A clock that moves one second on every reading, so every change has its own time."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
async def memory() -> MemoryStore:
    store = MemoryStore()
    await store.open()
    for tenant in (T, "other"):
        await store.create_tenant(Tenant(id=tenant, name=tenant.title(), created_at=START))
    return store


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def service(memory: MemoryStore, clock: Clock) -> Operations:
    return Operations(
        memory, clock=clock, limits=Limits(max_page=100, max_claim=20), register_targets=True
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
    service: Operations, memory: MemoryStore, request_: CreateOperation, parameter: str
) -> None:
    with pytest.raises(errors.Invalid) as caught:
        await service.create(T, request_)
    assert caught.value.context["parameter"] == parameter
    assert await memory.list_operations(T, OperationQuery()) == []


async def test_an_unknown_group_is_not_found(service: Operations, memory: MemoryStore) -> None:
    with pytest.raises(errors.NotFound) as caught:
        await service.create(T, CreateOperation(kind="k", groups=["nope"]))
    assert caught.value.context["parameter"] == "groups"
    assert await memory.list_operations(T, OperationQuery()) == []


async def test_empty_group_is_no_target(service: Operations) -> None:
    await service.put_group(T, "empty", [])
    with pytest.raises(errors.Conflict) as caught:
        await service.create(T, CreateOperation(kind="k", groups=["empty"]))
    assert caught.value.context["parameter"] == "groups"


async def test_groups_expand_to_targets_without_duplicates(service: Operations) -> None:
    await service.put_group(T, "cluster", ["n2", "n1", "n3", "n2"])
    op_id = await create(service, "n3", "n4", groups=["cluster", "cluster"])
    view = await service.get(T, op_id)
    assert view.targets == ["n1", "n2", "n3", "n4"]
    assert list(view.operation.groups) == ["cluster"]
    assert view.operation.total == 4 and view.operation.counts["queued"] == 4
    assert view.operation.state is OperationState.QUEUED
    assert [e.target for e in view.executions or []] == ["n1", "n2", "n3", "n4"]
    assert {e.state for e in view.executions or []} == {State.QUEUED}


async def test_numbers_are_per_tenant(service: Operations) -> None:
    a1, a2 = await create(service, "t"), await create(service, "t")
    b1 = await create(service, "t", tenant="other")
    assert [(await service.get(T, i)).operation.number for i in (a1, a2)] == [1, 2]
    assert (await service.get("other", b1)).operation.number == 1
    assert (await service.get_by_number(T, 2)).operation.id == a2
    assert (await service.latest(T)).operation.id == a2
    with pytest.raises(errors.NotFound):
        await service.get_by_number(T, 3)


async def test_schedule_at_in_the_future(service: Operations, clock: Clock) -> None:
    later = clock.now + timedelta(hours=1)
    op_id = await create(service, "a", "b", schedule_at=later)
    view = await service.get(T, op_id)
    assert view.operation.state is OperationState.SCHEDULED
    assert view.operation.schedule_at == later
    assert view.operation.counts["scheduled"] == 2
    assert all((e.state, e.queued_at) == (State.SCHEDULED, None) for e in view.executions or [])
    assert await service.claim_inbox(T, "a") == []
    # The time has come: a promotion queues it.
    [execution, _] = view.executions or []
    await report(service, execution.id, state=State.QUEUED)
    assert await op_state(service, op_id) is OperationState.QUEUED
    assert [i.execution.id for i in await service.claim_inbox(T, "a")] == [execution.id]


async def test_schedule_at_in_the_past_queues_at_once(service: Operations, clock: Clock) -> None:
    op_id = await create(service, "a", schedule_at=clock.now - timedelta(hours=1))
    assert await op_state(service, op_id) is OperationState.QUEUED
    assert len(await service.claim_inbox(T, "a")) == 1


async def test_idempotency_key(service: Operations, memory: MemoryStore) -> None:
    request = CreateOperation(kind="k", targets=["t1"], idempotency_key="key-1")
    first, created = await service.create(T, request)
    again, created_again = await service.create(T, request)
    assert (created, created_again) == (True, False)
    assert again.operation.id == first.operation.id
    assert again.targets == ["t1"]
    with pytest.raises(errors.IdempotencyMismatch) as caught:
        await service.create(T, CreateOperation(kind="k", targets=["t2"], idempotency_key="key-1"))
    assert caught.value.context["operation_id"] == first.operation.id
    other, created_other = await service.create("other", request)
    assert created_other and other.operation.id != first.operation.id
    assert len(await memory.list_operations(T, OperationQuery())) == 1


async def test_exclusive_kind_is_locked(service: Operations) -> None:
    first = await create(service, "t1", "t2", kind="firmware", exclusive=True)
    with pytest.raises(errors.Locked) as caught:
        await create(service, "t3", "t2", "t1", kind="firmware", exclusive=True)
    assert caught.value.context["targets"] == ["t1", "t2"]
    await create(service, "t3", kind="firmware", exclusive=True)
    await create(service, "t1", kind="other-kind", exclusive=True)
    await create(service, "t1", kind="firmware")  # not exclusive itself
    await service.cancel(T, first)
    await create(service, "t1", kind="firmware", exclusive=True)


async def test_unknown_tenant(service: Operations) -> None:
    with pytest.raises(errors.NotFound):
        await create(service, "a", tenant="nobody")


# reads, lists, tenancy --------------------------------------------------------------
async def test_other_tenant_sees_nothing(service: Operations) -> None:
    op_id = await create(service, "t1")
    [execution] = await service.executions(T, op_id)
    with pytest.raises(errors.NotFound):
        await service.get("other", op_id)
    with pytest.raises(errors.NotFound):
        await service.get_execution("other", execution.id)
    with pytest.raises(errors.NotFound):
        await service.update_execution("other", execution.id, ExecutionUpdate(progress=5))
    with pytest.raises(errors.NotFound):
        await service.cancel("other", op_id)
    with pytest.raises(errors.NotFound):
        await service.delete("other", op_id)
    with pytest.raises(errors.NotFound):
        await service.latest("other")
    assert await service.claim_inbox("other", "t1") == []
    assert (await service.find("other", OperationQuery())).items == []
    assert await service.events("other") == []


async def test_cursor_pages(service: Operations) -> None:
    made = [await create(service, f"t{i}") for i in range(7)]
    sizes: list[int] = []
    seen: list[str] = []
    cursor: str | None = None
    while True:
        page = await service.find(T, OperationQuery(limit=3), cursor)
        sizes.append(len(page.items))
        seen.extend(v.operation.id for v in page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert sizes == [3, 3, 1]
    assert seen == list(reversed(made))
    exact = await service.find(T, OperationQuery(limit=7))
    assert len(exact.items) == 7 and exact.next_cursor is None


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


async def test_list_filters(service: Operations) -> None:
    await service.put_group(T, "g", ["a"])
    first = await create(service, "a", groups=["g"], kind="scan")
    second = await create(service, "b", "a", kind="scan", internal=True)
    third = await create(service, "c", kind="update")
    await service.cancel(T, third)

    async def ids(**kw: Any) -> list[str]:
        return [v.operation.id for v in (await service.find(T, OperationQuery(**kw))).items]

    assert await ids() == [third, second, first]
    assert await ids(ids=[first, third, "op_nope"]) == [third, first]
    assert await ids(targets=["b", "c"]) == [third, second]
    assert await ids(targets=["a"]) == [second, first]
    assert await ids(group="g") == [first]
    assert await ids(states=[OperationState.CANCELLED]) == [third]
    assert await ids(states=[OperationState.QUEUED]) == [second, first]
    assert await ids(kind="scan") == [second, first]
    assert await ids(internal=True) == [second]
    assert await ids(internal=False) == [third, first]
    created = (await service.get(T, second)).operation.created_at
    assert await ids(created_after=created) == [third, second]  # inclusive
    assert await ids(created_before=created) == [first]  # exclusive
    assert await ids(before_number=3) == [second, first]
    assert await ids(limit=1, offset=1) == [second]
    assert await ids(kind="scan", internal=False, targets=["a"]) == [first]
    page = await service.find(T, OperationQuery())
    assert [list(v.targets) for v in page.items] == [["c"], ["a", "b"], ["a"]]


# inbox and notifications ------------------------------------------------------------
async def test_claim_inbox_redelivers_held_work_then_new_work(service: Operations) -> None:
    first_op = await create(service, "a", parameters={"depth": 3})
    await create(service, "a")
    first = await service.claim_inbox(T, "a", limit=1)
    assert [(i.kind, i.parameters) for i in first] == [("test", {"depth": 3})]
    assert first[0].execution.operation_id == first_op
    assert first[0].execution.state is State.DISPATCHED
    assert first[0].execution.lease_expires_at is not None
    again = await service.claim_inbox(T, "a", limit=1)
    assert [i.execution for i in again] == [i.execution for i in first]
    both = await service.claim_inbox(T, "a", limit=5)
    assert len(both) == 2 and both[0].execution.id == first[0].execution.id
    await report(service, first[0].execution.id, state=State.ACKNOWLEDGED)
    rest = await service.claim_inbox(T, "a", limit=5)
    assert [i.execution.id for i in rest] == [both[1].execution.id]
    assert await service.claim_inbox(T, "b") == []
    with pytest.raises(errors.Invalid):
        await service.claim_inbox(T, "a", limit=21)


async def test_claim_takes_oldest_first(service: Operations, memory: MemoryStore) -> None:
    made = [await create(service, "a") for _ in range(3)]
    claimed = await memory.claim(T, "a", datetime.now(UTC), 2)
    assert [e.operation_id for e in claimed] == made[:2]
    assert [e.operation_id for e in await memory.held(T, "a")] == made[:2]


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


async def test_waiters_woken_by_one_publish_share_one_read_started_after_it() -> None:
    n = notify.Notifier()
    key = notify.operation_key(T, "op1")
    waiters = [n.subscribe(key) for _ in range(50)]
    state = {"value": "before", "reads": 0}

    async def read() -> str:
        state["reads"] += 1
        await asyncio.sleep(0)
        return state["value"]

    async def long_poll(waiter: asyncio.Future[notify.Wake]) -> str:
        wake = await n.wait(waiter, 5)
        assert wake is not None
        return await wake.share("view", read)

    polls = [asyncio.ensure_future(long_poll(w)) for w in waiters]
    await asyncio.sleep(0)
    state["value"] = "after"
    n.publish([key])
    assert await asyncio.gather(*polls) == ["after"] * 50
    assert state["reads"] == 1

    # the next publish is a new wake: a new read, never the old result
    again = n.subscribe(key)
    poll = asyncio.ensure_future(long_poll(again))
    await asyncio.sleep(0)
    state["value"] = "later"
    n.publish([key])
    assert await poll == "later"
    assert state["reads"] == 2


async def test_a_shared_read_survives_a_waiter_leaving_and_raises_to_all() -> None:
    n = notify.Notifier()
    key = notify.operation_key(T, "op1")
    first, second, third = (n.subscribe(key) for _ in range(3))
    n.publish([key])
    wake = await n.wait(first, 1)
    assert wake is not None and wake is await n.wait(second, 1) is await n.wait(third, 1)
    gate = asyncio.Event()

    async def read() -> str:
        await gate.wait()
        raise errors.NotFound("gone meanwhile")

    leaving = asyncio.ensure_future(wake.share("view", read))
    staying = asyncio.ensure_future(wake.share("view", read))
    await asyncio.sleep(0)
    leaving.cancel()  # its client went away
    gate.set()
    with pytest.raises(errors.NotFound):
        await staying
    with pytest.raises(asyncio.CancelledError):
        await leaving


async def test_wait_times_out_with_none() -> None:
    n = notify.Notifier()
    waiter = n.subscribe(notify.inbox_key(T, "a"))
    assert await n.wait(waiter, 0.01) is None
    await asyncio.sleep(0)  # the cancelled waiter's done callback runs next
    assert n.waiting() == 0


# lifecycle ------------------------------------------------------------------------
async def test_lifecycle_to_succeeded(service: Operations) -> None:
    op_id = await create(service, "a", "b")
    [item_a] = await service.claim_inbox(T, "a")
    assert item_a.execution.version == 2
    assert await op_state(service, op_id) is OperationState.RUNNING
    ex_id = item_a.execution.id
    await report(service, ex_id, state=State.ACKNOWLEDGED, expected_version=2)
    await report(service, ex_id, state=State.IN_PROGRESS, progress=50, details={"step": 1})
    await report(service, ex_id, details={"note": "x"})
    execution = await service.get_execution(T, ex_id)
    assert (execution.version, dict(execution.details)) == (5, {"step": 1, "note": "x"})
    op = (await service.get(T, op_id)).operation
    assert (op.state, op.progress, op.counts["in_progress"]) == (OperationState.RUNNING, 25, 1)
    await report(service, ex_id, state=State.SUCCEEDED, result={"ok": True})
    [item_b] = await service.claim_inbox(T, "b")
    await report(service, item_b.execution.id, state=State.IN_PROGRESS, progress=10)
    await report(service, item_b.execution.id, state=State.SUCCEEDED)
    view = await service.get(T, op_id)
    op = view.operation
    assert op.state is OperationState.SUCCEEDED
    assert (op.progress, op.counts["succeeded"], op.error) == (100.0, 2, None)
    assert op.started_at is not None and op.completed_at is not None
    assert {e.target: e.state for e in view.executions or []} == {
        "a": State.SUCCEEDED,
        "b": State.SUCCEEDED,
    }
    assert all(e.finished_at is not None for e in view.executions or [])
    with pytest.raises(errors.Conflict) as caught:
        await report(service, ex_id, state=State.IN_PROGRESS)
    assert caught.value.state == "succeeded"


async def test_version_mismatch_carries_current(service: Operations) -> None:
    await create(service, "a")
    [item] = await service.claim_inbox(T, "a")
    await service.update_execution(
        T, item.execution.id, ExecutionUpdate(progress=10, expected_version=2)
    )
    with pytest.raises(errors.VersionMismatch) as caught:
        await service.update_execution(
            T, item.execution.id, ExecutionUpdate(progress=20, expected_version=2)
        )
    assert (caught.value.current.version, caught.value.current.progress) == (3, 10)
    with pytest.raises(errors.Invalid):
        await report(service, item.execution.id, progress=120)


async def test_failure_and_retry(service: Operations) -> None:
    op_id = await create(service, "a")
    [item] = await service.claim_inbox(T, "a")
    await report(service, item.execution.id, state=State.FAILED, error="disk full")
    op = (await service.get(T, op_id)).operation
    assert (op.state, op.error) == (OperationState.FAILED, "1 of 1 executions failed: a: disk full")
    retried = await service.retry_execution(T, item.execution.id)
    assert (retried.state, retried.attempt, retried.error) == (State.QUEUED, 2, None)
    op = (await service.get(T, op_id)).operation
    assert (op.state, op.error) == (OperationState.QUEUED, None)  # the failure is gone
    [again] = await service.claim_inbox(T, "a")
    assert again.execution.id == item.execution.id
    with pytest.raises(errors.Conflict):
        await service.retry_execution(T, item.execution.id)


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


# cancel and delete ----------------------------------------------------------------
async def test_cancel_and_force(service: Operations) -> None:
    op_id = await create(service, "a", "b", "c")
    [item_a] = await service.claim_inbox(T, "a")
    await report(service, item_a.execution.id, state=State.IN_PROGRESS)
    await service.claim_inbox(T, "c")  # dispatched only: cancelled without force
    view = await service.cancel(T, op_id, reason="changed my mind")
    states = {e.target: e.state for e in view.executions or []}
    assert states == {"a": State.IN_PROGRESS, "b": State.CANCELLED, "c": State.CANCELLED}
    assert view.operation.state is OperationState.RUNNING
    with pytest.raises(errors.Conflict) as caught:
        await service.cancel(T, op_id)
    assert caught.value.state == "running" and "force" in caught.value.detail
    view = await service.cancel(T, op_id, force=True)
    assert view.operation.state is OperationState.CANCELLED
    assert view.operation.completed_at is not None
    with pytest.raises(errors.Conflict) as caught:
        await report(service, item_a.execution.id, state=State.SUCCEEDED)
    assert caught.value.state == "cancelled"
    with pytest.raises(errors.Conflict) as caught:
        await service.cancel(T, op_id, force=True)
    assert caught.value.state == "cancelled" and "force" not in caught.value.detail
    reasons = [e.data.get("reason") for e in await service.events(T, operation_id=op_id)]
    assert "changed my mind" in reasons


async def test_delete_leaves_tombstone(service: Operations) -> None:
    op_id = await create(service, "a")
    with pytest.raises(errors.Conflict) as caught:
        await service.delete(T, op_id)
    assert caught.value.state == "queued"
    await service.cancel(T, op_id)
    await service.delete(T, op_id)
    with pytest.raises(errors.Gone):
        await service.get(T, op_id)
    with pytest.raises(errors.Gone):
        await service.get_by_number(T, 1)
    with pytest.raises(errors.Gone):
        await service.executions(T, op_id)
    with pytest.raises(errors.Gone):
        await service.events(T, operation_id=op_id)
    with pytest.raises(errors.Gone):
        await service.delete(T, op_id)
    with pytest.raises(errors.NotFound):
        await service.get(T, "op_never")
    with pytest.raises(errors.NotFound):
        await service.get("other", op_id)
    assert (await service.find(T, OperationQuery())).items == []
    assert (await service.events(T))[-1].type == "operation.deleted"
    # The number is not handed out again.
    assert (await service.get(T, await create(service, "a"))).operation.number == 2


# events ---------------------------------------------------------------------------
async def test_events_in_order(service: Operations) -> None:
    op_id = await create(service, "a")
    [item] = await service.claim_inbox(T, "a")
    await report(service, item.execution.id, state=State.IN_PROGRESS, progress=40, reason="half")
    await report(service, item.execution.id, state=State.SUCCEEDED)
    await create(service, "z", tenant="other")
    events = await service.events(T)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert [e.type for e in events] == [
        "operation.created",
        "execution.dispatched",
        "operation.running",
        "execution.in_progress",
        "execution.succeeded",
        "operation.succeeded",
    ]
    assert {e.operation_id for e in events} == {op_id}
    assert events[3].data["reason"] == "half" and events[3].progress == 40
    assert events[4].data["from"] == "in_progress"
    assert [e.seq for e in await service.events(T, after=4)] == [5, 6]
    assert [e.seq for e in await service.events(T, limit=2)] == [1, 2]
    assert [e.seq for e in await service.events(T, operation_id=op_id, after=5)] == [6]
    assert [e.seq for e in await service.events("other")] == [1]
    with pytest.raises(errors.Invalid):
        await service.events(T, after=-1)
    with pytest.raises(errors.Invalid):
        await service.events(T, limit=0)


# the store and the service agree ----------------------------------------------------
async def test_store_and_service_agree_after_mixed_outcomes(
    service: Operations, memory: MemoryStore
) -> None:
    op_id = await create(service, "a", "b", "c", "d", "e")

    async def check(expected: OperationState) -> None:
        view = await service.get(T, op_id)
        stored = await memory.get_operation(T, op_id)
        executions = await memory.list_executions(T, op_id)
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
    counts = (await memory.get_operation(T, op_id)).counts
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


# the memory store's own port methods ------------------------------------------------
async def test_memory_store_tenants_targets_groups(memory: MemoryStore) -> None:
    newest = queries.load("sqlite").migrations[-1][0]
    assert (await memory.migrate(), memory.name) == (newest, "memory")
    await memory.ping()
    with pytest.raises(errors.Conflict):
        await memory.create_tenant(Tenant(id=T, name="again", created_at=START))
    with pytest.raises(errors.NotFound):
        await memory.get_tenant("nobody")
    later = START + timedelta(days=1)
    await memory.put_target(Target(tenant=T, id="b", name="B", labels={}, created_at=START))
    await memory.put_target(Target(tenant=T, id="a", name="A", labels={"r": "1"}, created_at=START))
    again = await memory.put_target(
        Target(tenant=T, id="a", name="A2", labels={"r": "2"}, created_at=later)
    )
    assert (again.name, dict(again.labels), again.created_at) == ("A2", {"r": "2"}, START)
    assert [t.id for t in await memory.list_targets(T, after="", limit=10)] == ["a", "b"]
    assert [t.id for t in await memory.list_targets(T, after="a", limit=10)] == ["b"]
    assert [t.id for t in await memory.list_targets(T, after="", limit=1)] == ["a"]
    with pytest.raises(errors.NotFound):
        await memory.get_target("other", "a")
    with pytest.raises(errors.NotFound):
        await memory.put_target(
            Target(tenant="nobody", id="a", name="", labels={}, created_at=START)
        )
    await memory.put_group(Group(tenant=T, id="g", name="G", targets=["z", "a"], created_at=START))
    await memory.put_group(
        Group(tenant=T, id="g", name="G2", targets=["m", "z", "m"], created_at=later)
    )
    group = await memory.get_group(T, "g")
    assert (group.name, list(group.targets), group.created_at) == ("G2", ["m", "z"], START)
    with pytest.raises(errors.NotFound):
        await memory.get_group("other", "g")


async def test_memory_store_operation_targets(service: Operations, memory: MemoryStore) -> None:
    first = await create(service, "c", "a", "b")
    second = await create(service, "z")
    found = await memory.operation_targets(T, [second, first, "op_nope"])
    assert dict(found) == {first: ["a", "b", "c"], second: ["z"], "op_nope": []}
    assert dict(await memory.operation_targets("other", [first])) == {first: []}
    assert dict(await memory.operation_targets(T, [])) == {}


async def test_memory_store_concurrent_claims_never_share(
    service: Operations, memory: MemoryStore
) -> None:
    for _ in range(10):
        await create(service, "a")
    now = datetime.now(UTC)
    batches = await asyncio.gather(*(memory.claim(T, "a", now, 3) for _ in range(6)))
    claimed = [e.id for batch in batches for e in batch]
    assert len(claimed) == len(set(claimed)) == 10
    events = await memory.events_after(T, 0, limit=1000)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))


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
