"""The contract suite: every test runs on a real SQLite file and on real PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from datetime import UTC, datetime, timedelta

import pytest

from opstatus.domain import errors
from opstatus.domain.records import (
    ExecutionQuery,
    ExecutionUpdate,
    Group,
    OperationQuery,
    Target,
    Tenant,
)
from opstatus.domain.states import OperationState, State
from opstatus.service.operations import Operations
from opstatus.service.requests import CreateOperation
from opstatus.store.port import Store
from opstatus.store.sqlstore import list_block
from tests.conftest import TENANT, make_store

NOW = datetime(2026, 1, 1, tzinfo=UTC)
LATER = NOW + timedelta(days=1)


async def create(ops: Operations, *targets: str, tenant: str = TENANT, **kw: object) -> str:
    view, created = await ops.create(
        tenant,
        CreateOperation(kind=str(kw.pop("kind", "test")), targets=targets, **kw),  # type: ignore[arg-type]
    )
    assert created
    return view.operation.id


async def report(ops: Operations, execution_id: str, **kw: object) -> None:
    await ops.update_execution(TENANT, execution_id, ExecutionUpdate(**kw))  # type: ignore[arg-type]


# schema ---------------------------------------------------------------------------
async def test_migrate_is_idempotent(store: Store, store_url: str) -> None:
    version = await store.migrate()
    assert version >= 1
    again = make_store(store_url)
    await again.open()
    try:
        assert await again.migrate() == version
    finally:
        await again.close()


async def test_ping(store: Store) -> None:
    await store.ping()


# tenants, targets, groups ----------------------------------------------------------
async def test_tenants(store: Store) -> None:
    assert (await store.get_tenant(TENANT)).name == "Acme"
    with pytest.raises(errors.Conflict):
        await store.create_tenant(Tenant(id=TENANT, name="again", created_at=NOW))
    with pytest.raises(errors.NotFound):
        await store.get_tenant("nobody")


async def test_targets_upsert_and_list(store: Store) -> None:
    _, new = await store.put_target(
        Target(tenant=TENANT, id="b", name="B", labels={}, created_at=NOW)
    )
    assert new
    await store.put_target(
        Target(tenant=TENANT, id="a", name="A", labels={"rack": "1", "zone": "x"}, created_at=NOW)
    )
    again, new = await store.put_target(
        Target(tenant=TENANT, id="a", name="A2", labels={"rack": "2"}, created_at=LATER)
    )
    # an upsert keeps the first creation time and merges labels key by key
    assert not new
    assert (again.name, dict(again.labels), again.created_at) == (
        "A2", {"rack": "2", "zone": "x"}, NOW,
    )  # fmt: skip
    got = await store.get_target(TENANT, "a")
    assert (got.name, dict(got.labels), got.created_at) == ("A2", {"rack": "2", "zone": "x"}, NOW)
    assert [t.id for t in await store.list_targets(TENANT, after="", limit=10)] == ["a", "b"]
    assert [t.id for t in await store.list_targets(TENANT, after="a", limit=10)] == ["b"]
    assert [t.id for t in await store.list_targets(TENANT, after="", limit=1)] == ["a"]
    with pytest.raises(errors.NotFound):
        await store.get_target("other", "a")
    with pytest.raises(errors.NotFound):
        await store.put_target(Target(tenant="nobody", id="a", name="", labels={}, created_at=NOW))


async def test_a_target_merge_may_keep_its_name(store: Store) -> None:
    await store.put_target(
        Target(tenant=TENANT, id="a", name="Named", labels={"rack": "1"}, created_at=NOW)
    )
    kept, new = await store.put_target(
        Target(tenant=TENANT, id="a", name="a", labels={}, created_at=LATER), keep_name=True
    )
    assert (new, kept.name, dict(kept.labels)) == (False, "Named", {"rack": "1"})


async def test_groups_replace_members_in_order(store: Store) -> None:
    await store.put_group(
        Group(tenant=TENANT, id="g", name="G", targets=["z", "a"], created_at=NOW)
    )
    await store.put_group(
        Group(tenant=TENANT, id="g", name="G2", targets=["m", "z", "m"], created_at=LATER)
    )
    group = await store.get_group(TENANT, "g")
    assert (group.name, list(group.targets), group.created_at) == ("G2", ["m", "z"], NOW)
    with pytest.raises(errors.NotFound):
        await store.get_group("other", "g")


async def test_groups_of_a_target_in_id_order(store: Store) -> None:
    for gid, members in (("g2", ["a", "b"]), ("g1", ["a"]), ("g3", ["b"])):
        await store.put_group(
            Group(tenant=TENANT, id=gid, name=gid, targets=members, created_at=NOW)
        )
    assert await store.groups_of(TENANT, "a") == ["g1", "g2"]
    assert await store.groups_of(TENANT, "b") == ["g2", "g3"]
    assert await store.groups_of(TENANT, "c") == []
    assert await store.groups_of("other", "a") == []
    await store.put_group(Group(tenant=TENANT, id="g2", name="g2", targets=[], created_at=NOW))
    assert await store.groups_of(TENANT, "a") == ["g1"]


# create ---------------------------------------------------------------------------
async def test_numbers_are_per_tenant(ops: Operations) -> None:
    a1 = await create(ops, "t1")
    a2 = await create(ops, "t1")
    b1 = await create(ops, "t1", tenant="other")
    assert [(await ops.get(TENANT, i)).operation.number for i in (a1, a2)] == [1, 2]
    assert (await ops.get("other", b1)).operation.number == 1
    assert (await ops.get_by_number(TENANT, 2)).operation.id == a2
    with pytest.raises(errors.NotFound):
        await ops.get_by_number(TENANT, 3)


async def test_create_fans_out_with_groups(ops: Operations) -> None:
    await ops.put_group(TENANT, "cluster", ["n2", "n1", "n3", "n2"])
    op_id = await create(ops, "n3", "n4", groups=["cluster", "cluster"])
    view = await ops.get(TENANT, op_id)
    assert view.targets == ["n1", "n2", "n3", "n4"]  # each target once
    assert list(view.operation.groups) == ["cluster"]
    assert view.operation.total == 4 and view.operation.counts["queued"] == 4
    assert view.operation.state is OperationState.QUEUED
    assert [e.target for e in view.executions or []] == ["n1", "n2", "n3", "n4"]
    assert {e.state for e in view.executions or []} == {State.QUEUED}


async def test_create_refuses_unknown_targets_and_creates_nothing(store: Store) -> None:
    strict = Operations(store)  # the default: no registration on create
    await strict.put_target(TENANT, "known")
    await strict.put_group(TENANT, "cluster", ["known", "stray"])
    with pytest.raises(errors.UnknownTargets) as caught:
        await strict.create(
            TENANT, CreateOperation(kind="k", targets=["typo-2", "known", "typo-1"])
        )
    assert caught.value.targets == ["typo-1", "typo-2"]
    assert "typo-1, typo-2" in caught.value.detail
    with pytest.raises(errors.UnknownTargets) as caught:  # a group's members count too
        await strict.create(TENANT, CreateOperation(kind="k", groups=["cluster"]))
    assert caught.value.targets == ["stray"]
    with pytest.raises(errors.UnknownTargets):  # another tenant's target is unknown here
        await strict.create("other", CreateOperation(kind="k", targets=["known"]))
    assert (await strict.find(TENANT, OperationQuery())).items == []
    assert await store.known_targets(TENANT, ["stray", "typo-1"]) == set()


async def test_create_registers_unknown_targets_when_asked(store: Store) -> None:
    strict = Operations(store)
    await strict.put_target(TENANT, "known", name="Known", labels={"rack": "1"})
    request = CreateOperation(kind="k", targets=["known", "new-1"], register_targets=True)
    view, created = await strict.create(TENANT, request)
    assert created and view.targets == ["known", "new-1"]
    assert await store.known_targets(TENANT, ["known", "new-1", "x"]) == {"known", "new-1"}
    kept = await store.get_target(TENANT, "known")
    assert (kept.name, dict(kept.labels)) == ("Known", {"rack": "1"})  # not overwritten
    assert (await store.get_target(TENANT, "new-1")).name == "new-1"
    # the service-wide setting does the same for every request
    anyone = Operations(store, register_targets=True)
    await anyone.create(TENANT, CreateOperation(kind="k", targets=["new-2"]))
    assert await store.known_targets(TENANT, ["new-2"]) == {"new-2"}


async def test_peek_shows_work_and_dispatches_nothing(ops: Operations) -> None:
    first = await create(ops, "t1")
    second = await create(ops, "t1")
    await create(ops, "t2")
    peeked = await ops.peek_inbox(TENANT, "t1")
    assert [i.execution.operation_id for i in peeked] == [first, second]  # claim order
    assert {i.execution.state for i in peeked} == {State.QUEUED}
    assert {e.state for e in await ops.executions(TENANT, first)} == {State.QUEUED}
    [claimed] = await ops.claim_inbox(TENANT, "t1", limit=1)
    assert claimed.execution.operation_id == first
    peeked = await ops.peek_inbox(TENANT, "t1")
    assert [(i.execution.operation_id, i.execution.state) for i in peeked] == [
        (first, State.DISPATCHED),
        (second, State.QUEUED),
    ]
    assert len(await ops.peek_inbox(TENANT, "t1", limit=1)) == 1
    assert {e.state for e in await ops.executions(TENANT, second)} == {State.QUEUED}


async def test_error_summarises_current_failures(ops: Operations) -> None:
    op_id = await create(ops, "a", "b", "c")
    reasons = {"a": "disk full", "b": "no power"}
    for target, reason in reasons.items():
        [item] = await ops.claim_inbox(TENANT, target)
        await report(ops, item.execution.id, state=State.FAILED, error=reason)
    op = (await ops.get(TENANT, op_id)).operation
    assert op.error == "2 of 3 executions failed: a: disk full; b: no power"
    failed = {e.target: e for e in await ops.executions(TENANT, op_id)}
    await ops.retry_execution(TENANT, failed["a"].id)
    op = (await ops.get(TENANT, op_id)).operation
    assert op.error == "1 of 3 executions failed: b: no power"
    await ops.retry_execution(TENANT, failed["b"].id)
    cancelled = await ops.cancel(TENANT, op_id)
    assert cancelled.operation.state is OperationState.CANCELLED
    assert cancelled.operation.error is None  # no stale error once none failed


async def test_scheduled_operation(ops: Operations) -> None:
    later = datetime.now(UTC) + timedelta(hours=1)
    op_id = await create(ops, "t1", "t2", schedule_at=later)
    view = await ops.get(TENANT, op_id)
    assert view.operation.state is OperationState.SCHEDULED
    assert view.operation.schedule_at == later
    assert view.operation.counts["scheduled"] == 2
    assert all((e.state, e.queued_at) == (State.SCHEDULED, None) for e in view.executions or [])
    assert await ops.claim_inbox(TENANT, "t1") == []
    # The time has come: a promotion queues it.
    execution = next(e for e in view.executions or [] if e.target == "t1")
    await report(ops, execution.id, state=State.QUEUED)
    assert (await ops.get(TENANT, op_id)).operation.state is OperationState.QUEUED
    assert [i.execution.id for i in await ops.claim_inbox(TENANT, "t1")] == [execution.id]


async def test_idempotency_key(ops: Operations) -> None:
    request = CreateOperation(kind="k", targets=["t1"], idempotency_key="key-1")
    first, created = await ops.create(TENANT, request)
    again, created_again = await ops.create(TENANT, request)
    assert created and not created_again
    assert again.operation.id == first.operation.id
    assert again.targets == ["t1"]
    with pytest.raises(errors.IdempotencyMismatch) as caught:
        await ops.create(TENANT, CreateOperation(kind="k", targets=["t2"], idempotency_key="key-1"))
    assert caught.value.context["operation_id"] == first.operation.id
    # The same key in another tenant is another operation.
    other, created_other = await ops.create("other", request)
    assert created_other and other.operation.id != first.operation.id
    assert len((await ops.find(TENANT, OperationQuery())).items) == 1


async def test_idempotency_key_under_concurrency(store_url: str, store: Store) -> None:
    stores = [make_store(store_url) for _ in range(4)]
    for s in stores:
        await s.open()
    try:
        services = [Operations(s, register_targets=True) for s in stores]
        request = CreateOperation(kind="k", targets=["t1"], idempotency_key="same")
        results = await asyncio.gather(*(svc.create(TENANT, request) for svc in services * 3))
    finally:
        for s in stores:
            await s.close()
    assert len({view.operation.id for view, _ in results}) == 1
    assert sum(created for _, created in results) == 1


async def test_concurrent_creates_each_get_their_own_answer(store: Store) -> None:
    """Creates made at once (on PostgreSQL: one statement for those that wait) answer
    as they would one by one: refusals, repeats and numbers each their own."""
    strict = Operations(store)
    for target in ("a", "b", "c"):
        await strict.put_target(TENANT, target)
    used = CreateOperation(kind="k", targets=["a"], idempotency_key="used")
    first, _ = await strict.create(TENANT, used)
    keyed = CreateOperation(kind="k", targets=["b"], idempotency_key="twice")
    requests = [
        (TENANT, CreateOperation(kind="k", targets=["a", "b"], parameters={"n": 1})),
        (TENANT, CreateOperation(kind="k", targets=["typo", "a", "b-typo"])),
        (TENANT, keyed),
        (TENANT, keyed),
        (TENANT, CreateOperation(kind="k", targets=["c"], idempotency_key="used")),
        (TENANT, used),
        ("other", CreateOperation(kind="k", targets=["a"])),  # another tenant's targets
        (TENANT, CreateOperation(kind="k", targets=["c"], parameters={"n": [1]})),
    ]
    results = await asyncio.gather(
        *(strict.create(tenant, request) for tenant, request in requests),
        return_exceptions=True,
    )
    made, unknown, keyed_a, keyed_b, mismatch, repeat, other, listed = results
    assert isinstance(unknown, errors.UnknownTargets) and unknown.targets == ["b-typo", "typo"]
    assert isinstance(other, errors.UnknownTargets) and other.targets == ["a"]
    assert isinstance(mismatch, errors.IdempotencyMismatch)
    assert mismatch.context["operation_id"] == first.operation.id
    assert isinstance(repeat, tuple) and repeat[0].operation.id == first.operation.id
    assert not repeat[1]
    assert isinstance(keyed_a, tuple) and isinstance(keyed_b, tuple)
    assert keyed_a[0].operation.id == keyed_b[0].operation.id
    assert sorted([keyed_a[1], keyed_b[1]]) == [False, True]
    assert isinstance(made, tuple) and isinstance(listed, tuple)
    new = {v.operation.id: v for v, _ in (made, listed, keyed_a if keyed_a[1] else keyed_b)}
    assert sorted(v.operation.number for v in new.values()) == [2, 3, 4]  # gapless
    stored = {v.operation.id: v for v in (await strict.find(TENANT, OperationQuery())).items}
    assert len(stored) == 4
    for op_id, view in new.items():
        assert stored[op_id].operation.number == view.operation.number
        assert stored[op_id].targets == view.targets
    assert stored[made[0].operation.id].operation.parameters == {"n": 1}
    assert stored[listed[0].operation.id].operation.parameters == {"n": [1]}
    assert [e.target for e in await strict.executions(TENANT, made[0].operation.id)] == ["a", "b"]
    events = await strict.events(TENANT, limit=100)
    created_events = [e.operation_id for e in events if e.type == "operation.created"]
    assert sorted(created_events) == sorted([first.operation.id, *new])


async def test_exclusive_kind_is_locked(ops: Operations) -> None:
    first = await create(ops, "t1", "t2", kind="firmware", exclusive=True)
    with pytest.raises(errors.Locked) as caught:
        await create(ops, "t2", "t3", kind="firmware", exclusive=True)
    assert caught.value.context["targets"] == ["t2"]
    with pytest.raises(errors.Locked) as caught:
        await create(ops, "t3", "t2", "t1", kind="firmware", exclusive=True)
    assert caught.value.context["targets"] == ["t1", "t2"]  # sorted
    await create(ops, "t3", kind="firmware", exclusive=True)
    await create(ops, "t1", kind="other-kind", exclusive=True)
    await create(ops, "t1", kind="firmware")  # not exclusive itself
    await ops.cancel(TENANT, first)  # a finished operation holds no lock
    await create(ops, "t1", kind="firmware", exclusive=True)


# reads and tenancy ----------------------------------------------------------------
async def test_other_tenant_sees_nothing(ops: Operations) -> None:
    op_id = await create(ops, "t1")
    execution = (await ops.executions(TENANT, op_id))[0]
    with pytest.raises(errors.NotFound):
        await ops.get("other", op_id)
    with pytest.raises(errors.NotFound):
        await ops.get_execution("other", execution.id)
    with pytest.raises(errors.NotFound):
        await ops.update_execution("other", execution.id, ExecutionUpdate(progress=5))
    with pytest.raises(errors.NotFound):
        await ops.cancel("other", op_id)
    with pytest.raises(errors.NotFound):
        await ops.delete("other", op_id)
    with pytest.raises(errors.NotFound):
        await ops.latest("other")
    assert await ops.claim_inbox("other", "t1") == []
    assert (await ops.find("other", OperationQuery())).items == []
    assert await ops.events("other") == []


async def test_latest(ops: Operations) -> None:
    with pytest.raises(errors.NotFound):
        await ops.latest(TENANT)
    await create(ops, "t1")
    second = await create(ops, "t2")
    assert (await ops.latest(TENANT)).operation.id == second


# lifecycle ------------------------------------------------------------------------
async def test_lifecycle_derives_operation_state(ops: Operations) -> None:
    op_id = await create(ops, "a", "b")
    [item_a] = await ops.claim_inbox(TENANT, "a")
    assert item_a.kind == "test"
    assert (await ops.get(TENANT, op_id)).operation.state is OperationState.RUNNING
    ex_id = item_a.execution.id
    await report(ops, ex_id, state=State.ACKNOWLEDGED, expected_version=2)
    await report(ops, ex_id, state=State.IN_PROGRESS, progress=50, details={"step": 1})
    await report(ops, ex_id, details={"note": "x"})  # details merge, key by key
    execution = await ops.get_execution(TENANT, ex_id)
    assert (execution.version, dict(execution.details)) == (5, {"step": 1, "note": "x"})
    view = await ops.get(TENANT, op_id)
    assert (view.operation.progress, view.operation.counts["in_progress"]) == (25.0, 1)
    await report(ops, ex_id, state=State.SUCCEEDED, result={"ok": True})
    [item_b] = await ops.claim_inbox(TENANT, "b")
    await report(ops, item_b.execution.id, state=State.FAILED, error="disk full")
    view = await ops.get(TENANT, op_id)
    op = view.operation
    assert op.state is OperationState.FAILED
    assert op.progress == 100.0
    assert op.started_at is not None and op.completed_at is not None
    assert op.error == "1 of 2 executions failed: b: disk full"
    assert op.counts["succeeded"] == 1 and op.counts["failed"] == 1
    states = {e.target: e.state for e in view.executions or []}
    assert states == {"a": State.SUCCEEDED, "b": State.FAILED}
    assert all(e.finished_at is not None for e in view.executions or [])


async def test_versions_grow_and_mismatch_carries_current(ops: Operations) -> None:
    op_id = await create(ops, "a")
    [item] = await ops.claim_inbox(TENANT, "a")
    assert item.execution.version == 2
    updated = await ops.update_execution(
        TENANT, item.execution.id, ExecutionUpdate(progress=10, expected_version=2)
    )
    assert updated.version == 3
    with pytest.raises(errors.VersionMismatch) as caught:
        await ops.update_execution(
            TENANT, item.execution.id, ExecutionUpdate(progress=20, expected_version=2)
        )
    assert caught.value.current.version == 3
    assert caught.value.current.progress == 10
    assert (await ops.get(TENANT, op_id)).operation.version > 1


async def test_illegal_transition_is_conflict_with_state(ops: Operations) -> None:
    await create(ops, "a")
    [item] = await ops.claim_inbox(TENANT, "a")
    await report(ops, item.execution.id, state=State.SUCCEEDED)
    with pytest.raises(errors.Conflict) as caught:
        await report(ops, item.execution.id, state=State.IN_PROGRESS)
    assert caught.value.state == "succeeded"
    with pytest.raises(errors.Invalid):
        await report(ops, item.execution.id, progress=120)


async def test_retry_requeues_failed_execution(ops: Operations) -> None:
    op_id = await create(ops, "a")
    [item] = await ops.claim_inbox(TENANT, "a")
    await report(ops, item.execution.id, state=State.FAILED, error="boom")
    op = (await ops.get(TENANT, op_id)).operation
    assert (op.state, op.error) == (OperationState.FAILED, "1 of 1 executions failed: a: boom")
    retried = await ops.retry_execution(TENANT, item.execution.id)
    assert (retried.state, retried.attempt, retried.error) == (State.QUEUED, 2, None)
    op = (await ops.get(TENANT, op_id)).operation
    assert (op.state, op.error) == (OperationState.QUEUED, None)  # the failure is gone
    [again] = await ops.claim_inbox(TENANT, "a")
    assert again.execution.id == item.execution.id
    with pytest.raises(errors.Conflict):  # only a failed or timed-out one is retried
        await ops.retry_execution(TENANT, item.execution.id)


async def test_inbox_redelivers_until_acknowledged(ops: Operations) -> None:
    first_op = await create(ops, "a", parameters={"depth": 3})
    await create(ops, "a")
    first = await ops.claim_inbox(TENANT, "a", limit=1)
    assert [(i.kind, i.parameters) for i in first] == [("test", {"depth": 3})]
    assert first[0].execution.operation_id == first_op
    assert first[0].execution.state is State.DISPATCHED
    assert first[0].execution.lease_expires_at is not None
    again = await ops.claim_inbox(TENANT, "a", limit=1)
    assert [i.execution for i in again] == [i.execution for i in first]
    both = await ops.claim_inbox(TENANT, "a", limit=5)  # held work first, then new work
    assert len(both) == 2 and both[0].execution.id == first[0].execution.id
    await report(ops, first[0].execution.id, state=State.ACKNOWLEDGED)
    rest = await ops.claim_inbox(TENANT, "a", limit=5)
    assert [i.execution.id for i in rest] == [both[1].execution.id]
    assert await ops.claim_inbox(TENANT, "b") == []


async def test_claim_takes_oldest_first(store: Store, ops: Operations) -> None:
    ids = [await create(ops, "a") for _ in range(3)]
    claimed = await store.claim(TENANT, "a", datetime.now(UTC), 2)
    assert [e.operation_id for e in claimed] == ids[:2]
    assert all(e.state is State.DISPATCHED for e in claimed)
    assert [e.operation_id for e in await store.held(TENANT, "a")] == ids[:2]


async def test_claimed_work_is_what_the_target_then_holds(store: Store, ops: Operations) -> None:
    """claim_work hands out each execution with its operation's kind and parameters as
    held_work then lists them (the inbox answers a first claim from it alone)."""
    first = await create(ops, "a", parameters={"depth": 3})
    second = await create(ops, "a", "b", parameters={"image": "fw-2", "tags": ["x"]})
    await create(ops, "a")
    work = await store.claim_work(TENANT, "a", datetime.now(UTC), 2)
    assert [(w.execution.operation_id, w.kind, dict(w.parameters)) for w in work] == [
        (first, "test", {"depth": 3}),
        (second, "test", {"image": "fw-2", "tags": ["x"]}),
    ]
    assert work == await store.held_work(TENANT, "a")
    assert await store.claim_work(TENANT, "c", datetime.now(UTC), 2) == []


async def test_an_inbox_read_claims_only_when_nothing_is_held(
    store: Store, ops: Operations
) -> None:
    """inbox_work: nothing queued, nothing held: nothing, and nothing dispatched; work
    queued: claimed (what held_work then lists); work held: that, and no new claim."""
    now = datetime.now(UTC)
    assert await store.inbox_work(TENANT, "a", now, 5) == ([], [])
    first = await create(ops, "a", parameters={"depth": 3})
    second = await create(ops, "a", "b", parameters={"image": "fw-2"})
    held, fresh = await store.inbox_work(TENANT, "a", now, 1)
    assert held == [] and [(w.execution.operation_id, w.kind) for w in fresh] == [(first, "test")]
    assert fresh == await store.held_work(TENANT, "a")
    held, fresh = await store.inbox_work(TENANT, "a", now, 5)
    assert held == await store.held_work(TENANT, "a") and fresh == []
    assert [w.execution.operation_id for w in held] == [first]  # the second still queued
    [queued] = await store.find_executions(
        TENANT, ExecutionQuery(targets=["a"], states=[State.QUEUED])
    )
    assert queued.operation_id == second
    assert await store.inbox_work(TENANT, "c", now, 5) == ([], [])


async def test_a_report_stores_every_field_as_given(store: Store, ops: Operations) -> None:
    """What a report writes reads back exactly: floats, microsecond timestamps, text,
    nested documents, an empty result and the operation's summary (PostgreSQL writes
    them all in one statement, each table's rows as one JSON document)."""
    op_id = await create(ops, "a", "b")
    [item] = await ops.claim_inbox(TENANT, "a")
    eta = datetime(2031, 2, 3, 4, 5, 6, 789012, tzinfo=UTC)
    details = {"step": "flash", "nested": {"list": [1, 2.5, None, "x"], "ok": True}}
    await report(ops, item.execution.id, state=State.IN_PROGRESS, progress=0.123456789,
                 eta=eta, details=details)  # fmt: skip
    after = await store.get_execution(TENANT, item.execution.id)
    assert (after.state, after.progress, after.eta) == (State.IN_PROGRESS, 0.123456789, eta)
    assert after.details == details and after.result is None
    error, result = 'boom: ü \\ "quoted"', {"code": 7, "lines": ["a", "b"]}
    await report(ops, item.execution.id, state=State.FAILED, error=error, result=result)
    failed = await store.get_execution(TENANT, item.execution.id)
    assert (failed.error, failed.result) == (error, result)
    assert failed.finished_at is not None and failed.finished_at.tzinfo is not None
    assert failed.version > after.version > item.execution.version
    op = await store.get_operation(TENANT, op_id)
    assert op.counts[State.FAILED] == 1 and op.counts[State.QUEUED] == 1
    assert op.error is not None and "boom" in op.error
    assert op.updated_at == failed.updated_at


# cancel and delete ----------------------------------------------------------------
async def test_cancel_queued_and_force_running(ops: Operations) -> None:
    op_id = await create(ops, "a", "b", "c")
    [item] = await ops.claim_inbox(TENANT, "a")
    await report(ops, item.execution.id, state=State.IN_PROGRESS)
    await ops.claim_inbox(TENANT, "c")  # dispatched only: cancelled without force
    view = await ops.cancel(TENANT, op_id, reason="changed my mind")
    states = {e.target: e.state for e in view.executions or []}
    assert states == {"a": State.IN_PROGRESS, "b": State.CANCELLED, "c": State.CANCELLED}
    assert view.operation.state is OperationState.RUNNING
    with pytest.raises(errors.Conflict) as caught:
        await ops.cancel(TENANT, op_id)
    assert caught.value.state == "running" and "force" in caught.value.detail
    view = await ops.cancel(TENANT, op_id, force=True)
    assert view.operation.state is OperationState.CANCELLED
    assert view.operation.completed_at is not None
    with pytest.raises(errors.Conflict) as caught:
        await report(ops, item.execution.id, state=State.SUCCEEDED)
    assert caught.value.state == "cancelled"
    with pytest.raises(errors.Conflict) as caught:
        await ops.cancel(TENANT, op_id, force=True)
    assert caught.value.state == "cancelled" and "force" not in caught.value.detail
    reasons = [e.data.get("reason") for e in await ops.events(TENANT, operation_id=op_id)]
    assert "changed my mind" in reasons


async def test_delete_leaves_tombstone(ops: Operations) -> None:
    op_id = await create(ops, "a")
    with pytest.raises(errors.Conflict) as caught:
        await ops.delete(TENANT, op_id)
    assert caught.value.state == "queued"
    await ops.cancel(TENANT, op_id)
    await ops.delete(TENANT, op_id)
    with pytest.raises(errors.Gone):
        await ops.get(TENANT, op_id)
    with pytest.raises(errors.Gone):
        await ops.get_by_number(TENANT, 1)
    with pytest.raises(errors.Gone):
        await ops.executions(TENANT, op_id)
    with pytest.raises(errors.Gone):
        await ops.events(TENANT, operation_id=op_id)
    with pytest.raises(errors.Gone):
        await ops.delete(TENANT, op_id)
    with pytest.raises(errors.NotFound):
        await ops.get(TENANT, "op_never")
    with pytest.raises(errors.NotFound):
        await ops.get("other", op_id)
    assert (await ops.find(TENANT, OperationQuery())).items == []
    assert (await ops.events(TENANT))[-1].type == "operation.deleted"
    # The number is not handed out again.
    assert (await ops.get(TENANT, await create(ops, "a"))).operation.number == 2


# lists ----------------------------------------------------------------------------
async def test_list_filters(ops: Operations, store: Store) -> None:
    await ops.put_group(TENANT, "g", ["a"])
    first = await create(ops, "a", groups=["g"], kind="scan")
    second = await create(ops, "b", "a", kind="scan", internal=True)
    third = await create(ops, "c", kind="update")
    await ops.cancel(TENANT, third)

    async def ids(**kw: object) -> list[str]:
        page = await ops.find(TENANT, OperationQuery(**kw))  # type: ignore[arg-type]
        return [v.operation.id for v in page.items]

    assert await ids() == [third, second, first]
    assert await ids(ids=[first, third, "op_nope"]) == [third, first]
    assert await ids(targets=["b", "c"]) == [third, second]
    assert await ids(targets=["a"]) == [second, first]
    assert await ids(groups=["g"]) == [first]
    assert await ids(groups=["nope", "g"]) == [first]
    assert await ids(states=[OperationState.CANCELLED]) == [third]
    assert await ids(states=[OperationState.QUEUED]) == [second, first]
    assert await ids(states=[OperationState.QUEUED, OperationState.CANCELLED]) == [
        third, second, first,
    ]  # fmt: skip
    assert await ids(kinds=["scan"]) == [second, first]
    assert await ids(kinds=["update", "scan"]) == [third, second, first]
    assert await ids(kinds=["nope"]) == []
    assert await ids(internal=True) == [second]
    assert await ids(internal=False) == [third, first]
    created = (await ops.get(TENANT, second)).operation.created_at
    assert await ids(created_after=created) == [third, second]  # inclusive
    assert await ids(created_before=created) == [first]  # exclusive
    # the ends of time (what a query's odd but valid times clamp to) are filters too
    assert await ids(created_before=datetime.min.replace(tzinfo=UTC)) == []
    assert await ids(created_before=datetime.max.replace(tzinfo=UTC)) == [third, second, first]
    assert await ids(before_number=3) == [second, first]
    assert await ids(limit=1, offset=1) == [second]
    assert await ids(kinds=["scan"], internal=False, targets=["a"]) == [first]
    page = await ops.find(TENANT, OperationQuery())
    assert [list(v.targets) for v in page.items] == [["c"], ["a", "b"], ["a"]]


async def test_list_by_creation_window(store: Store) -> None:
    """A creation-time window lists newest number first, whichever block the store picks
    (sqlstore.list_block): a window far back goes by op_list_window, one reaching now by
    op_list, and the pages after the first by op_list from the cursor. Creation times
    are out of number order here (a number is handed out at commit, a creation time
    before it), so an order by time would fail, and so would a number of another
    tenant."""
    base = datetime.now(UTC) - timedelta(days=30)
    moment = {"now": base}
    ops = Operations(store, clock=lambda: moment["now"], register_targets=True)
    made: list[tuple[datetime, str]] = []  # (created, id) in number order
    for number, hour in enumerate([5, 1, 7, 3, 0, 6, 2, 4, 9, 8], 1):
        moment["now"] = base + timedelta(hours=hour)
        made.append((moment["now"], await create(ops, f"t{number}")))
        if number == 4:
            foreign = await create(ops, "t1", tenant="other")
    moment["now"] = datetime.now(UTC)
    made.append((moment["now"], await create(ops, "t0")))

    def expected(after: datetime | None, before: datetime | None) -> list[str]:
        inside = [
            i for t, i in made if (after is None or t >= after) and (before is None or t < before)
        ]
        return inside[::-1]

    async def ids(query: OperationQuery, tenant: str = TENANT) -> list[str]:
        return [v.operation.id for v in (await ops.find(tenant, query)).items]

    async def paged(query: OperationQuery) -> list[str]:
        found: list[str] = []
        cursor: str | None = None
        while True:
            page = await ops.find(TENANT, query, cursor)
            found.extend(v.operation.id for v in page.items)
            if (cursor := page.next_cursor) is None:
                return found

    def at(hour: float) -> datetime:
        return base + timedelta(hours=hour)

    far_back = [(at(2), at(7)), (at(0), at(9.5)), (at(3), at(3.5)), (at(6), at(6)), (at(7), at(2))]
    reaching_now = [(at(8), at(2000)), (at(3), None), (None, at(4))]
    for after, before in far_back + reaching_now:
        query = OperationQuery(limit=2, created_after=after, created_before=before)
        block = "op_list_window" if (after, before) in far_back else "op_list"
        assert list_block(query, time.time()) == block
        want = expected(after, before)
        assert await paged(query) == want, (after, before)
        assert await ids(dataclasses.replace(query, limit=20)) == want
        assert await ids(dataclasses.replace(query, limit=3, offset=2)) == want[2:5]
    window = OperationQuery(created_after=at(2), created_before=at(7))
    assert await ids(window, "other") == [foreign]


async def test_operation_targets(ops: Operations, store: Store) -> None:
    first = await create(ops, "c", "a", "b")
    second = await create(ops, "z")
    found = await store.operation_targets(TENANT, [second, first, "op_nope"])
    assert dict(found) == {first: ["a", "b", "c"], second: ["z"], "op_nope": []}
    assert dict(await store.operation_targets("other", [first])) == {first: []}
    assert dict(await store.operation_targets(TENANT, [])) == {}


async def test_cursor_pagination(ops: Operations) -> None:
    made = [await create(ops, f"t{i}") for i in range(7)]
    sizes: list[int] = []
    seen: list[str] = []
    cursor: str | None = None
    while True:
        page = await ops.find(TENANT, OperationQuery(limit=3), cursor)
        sizes.append(len(page.items))
        seen.extend(v.operation.id for v in page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert sizes == [3, 3, 1]
    assert seen == list(reversed(made))
    exact = await ops.find(TENANT, OperationQuery(limit=7))
    assert len(exact.items) == 7 and exact.next_cursor is None


# events ---------------------------------------------------------------------------
async def test_events_follow_every_change_in_order(ops: Operations) -> None:
    op_id = await create(ops, "a")
    [item] = await ops.claim_inbox(TENANT, "a")
    await report(ops, item.execution.id, state=State.IN_PROGRESS, progress=40, reason="half")
    await report(ops, item.execution.id, state=State.SUCCEEDED)
    await create(ops, "z", tenant="other")
    events = await ops.events(TENANT)
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
    assert [e.seq for e in await ops.events(TENANT, after=4)] == [5, 6]
    assert [e.seq for e in await ops.events(TENANT, limit=2)] == [1, 2]
    assert [e.seq for e in await ops.events(TENANT, operation_id=op_id, after=5)] == [6]
    assert [e.seq for e in await ops.events("other")] == [1]
    with pytest.raises(errors.Invalid):
        await ops.events(TENANT, after=-1)
    with pytest.raises(errors.Invalid):
        await ops.events(TENANT, limit=0)


async def test_find_executions_across_operations(ops: Operations) -> None:
    first = await create(ops, "a", "b")
    second = await create(ops, "b", "c", internal=True)
    [item] = await ops.claim_inbox(TENANT, "a")
    await report(ops, item.execution.id, state=State.SUCCEEDED)

    async def found(**kw: object) -> list[tuple[str, str]]:
        query = ExecutionQuery(**kw)  # type: ignore[arg-type]
        return [(e.operation_id, e.target) for e in await ops.find_executions(TENANT, query)]

    everything = await found()
    assert sorted(everything) == sorted([(first, "a"), (first, "b"), (second, "b"), (second, "c")])
    assert [t for _, t in everything][:2] in (["b", "c"], ["c", "b"])  # newest first
    assert sorted(await found(operation_ids=[second])) == [(second, "b"), (second, "c")]
    assert sorted(await found(targets=["b"])) == [(first, "b"), (second, "b")]
    assert await found(states=[State.SUCCEEDED]) == [(first, "a")]
    assert sorted(await found(internal=False)) == [(first, "a"), (first, "b")]
    assert len(await found(limit=1, offset=1)) == 1
    assert await ops.find_executions("other", ExecutionQuery()) == []
    with pytest.raises(errors.Invalid):
        await ops.find_executions(TENANT, ExecutionQuery(limit=0))
