"""The contract of ``Store.update_executions`` (a batch of reports in one transaction),
on a real SQLite file and on real PostgreSQL, and the service's use of it."""

from __future__ import annotations

import asyncio
import concurrent.futures
from datetime import UTC, datetime
from typing import Any

import pytest

from opstatus.domain import errors
from opstatus.domain.records import Execution, ExecutionUpdate, Rollout
from opstatus.domain.states import OperationState, State
from opstatus.service import notifier as notify
from opstatus.service.operations import Operations
from opstatus.service.requests import CreateOperation
from opstatus.store.port import Store
from tests.conftest import TENANT, make_store


async def create(ops: Operations, *targets: str, tenant: str = TENANT, **kw: Any) -> str:
    view, _ = await ops.create(tenant, CreateOperation(kind="test", targets=targets, **kw))
    return view.operation.id


async def claimed(ops: Operations, target: str, tenant: str = TENANT) -> Execution:
    [item] = await ops.claim_inbox(tenant, target)
    return item.execution


async def by_target(ops: Operations, op_id: str) -> dict[str, Execution]:
    return {e.target: e for e in await ops.executions(TENANT, op_id)}


def committed_version(store_url: str, execution_id: str) -> int:
    """The execution's version as another connection sees it (committed data only),
    read on a thread of its own, so it can be called inside a running transaction."""

    async def read() -> int:
        other = make_store(store_url, pool=1)
        await other.open()
        try:
            return (await other.get_execution(TENANT, execution_id)).version
        finally:
            await other.close()

    with concurrent.futures.ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, read()).result()


async def test_reports_apply_in_order_and_a_refused_one_changes_nothing(
    store: Store, ops: Operations
) -> None:
    op_id = await create(ops, "a", "b", "c")
    a, b = await claimed(ops, "a"), await claimed(ops, "b")
    c = (await by_target(ops, op_id))["c"]  # still queued
    await create(ops, "z", tenant="other")
    [theirs] = await ops.claim_inbox("other", "z")
    seen: list[tuple[int, str, int]] = []

    def admit(index: int, execution: Execution) -> None:
        seen.append((index, execution.id, execution.version))
        if index == 6:
            raise errors.Forbidden("not this one")

    reports = [
        (a.id, ExecutionUpdate(state=State.ACKNOWLEDGED)),
        (a.id, ExecutionUpdate(state=State.IN_PROGRESS, progress=50)),  # sees the first
        ("ex_missing", ExecutionUpdate(progress=5)),
        (b.id, ExecutionUpdate(state=State.SUCCEEDED, expected_version=1)),
        (c.id, ExecutionUpdate(state=State.SUCCEEDED)),  # queued -> succeeded: no step
        (theirs.execution.id, ExecutionUpdate(progress=5)),  # another tenant's
        (b.id, ExecutionUpdate(state=State.FAILED, error="refused by admit")),
        (b.id, ExecutionUpdate(state=State.ACKNOWLEDGED, expected_version=2)),
    ]
    results = await store.update_executions(TENANT, reports, datetime.now(UTC), admit=admit)

    assert len(results) == len(reports)
    first, second, missing, stale, illegal, foreign, refused, last = results
    assert isinstance(first, Execution) and (first.state, first.version) == ("acknowledged", 3)
    assert isinstance(second, Execution)
    assert (second.state, second.progress, second.version) == ("in_progress", 50, 4)
    assert isinstance(missing, errors.NotFound)
    assert isinstance(stale, errors.VersionMismatch) and stale.current.version == 2
    assert isinstance(illegal, errors.Conflict) and illegal.state == "queued"
    assert isinstance(foreign, errors.NotFound)
    assert isinstance(refused, errors.Forbidden)
    assert isinstance(last, Execution) and (last.state, last.version) == ("acknowledged", 3)
    # admit saw every execution found, locked, as the reports before it left it
    assert seen == [(0, a.id, 2), (1, a.id, 3), (3, b.id, 2), (4, c.id, 1), (6, b.id, 2),
                    (7, b.id, 2)]  # fmt: skip

    now = await by_target(ops, op_id)
    assert (now["a"].state, now["a"].version) == (State.IN_PROGRESS, 4)
    assert (now["b"].state, now["b"].version, now["b"].error) == (State.ACKNOWLEDGED, 3, None)
    assert now["c"] == c
    assert await ops.get_execution("other", theirs.execution.id) == theirs.execution
    # one event per applied report, none for a refused one
    events = [e for e in await ops.events(TENANT, limit=1000) if e.type.startswith("execution.")]
    assert [(e.target, e.type) for e in events] == [
        ("a", "execution.dispatched"),
        ("b", "execution.dispatched"),
        ("a", "execution.acknowledged"),
        ("a", "execution.in_progress"),
        ("b", "execution.acknowledged"),
    ]
    op = (await ops.get(TENANT, op_id)).operation
    assert (op.counts["in_progress"], op.counts["acknowledged"], op.counts["queued"]) == (1, 1, 1)


async def test_a_batch_writes_what_its_reports_one_by_one_would(
    store: Store, ops: Operations
) -> None:
    """The batch folds its reports in memory and writes once: executions, operation
    (state, counts, error) and events come out as the same reports one at a time
    leave them, a failure (which reads the stored failures) and a reason included."""

    async def run(batched: bool) -> tuple[list[Any], Any, list[tuple[Any, ...]]]:
        op_id = await create(ops, "a", "b", "c")
        a, b, c = [await claimed(ops, t) for t in "abc"]
        reports = [
            (a.id, ExecutionUpdate(state=State.ACKNOWLEDGED)),
            (b.id, ExecutionUpdate(state=State.IN_PROGRESS, progress=10, reason="started")),
            (a.id, ExecutionUpdate(state=State.IN_PROGRESS, progress=40)),
            (b.id, ExecutionUpdate(state=State.FAILED, error="disk full")),
            (a.id, ExecutionUpdate(state=State.SUCCEEDED, result={"ok": True})),
            (c.id, ExecutionUpdate(state=State.FAILED, error="no route")),
        ]
        now = datetime.now(UTC)
        if batched:
            await store.update_executions(TENANT, reports, now)
        else:
            for execution_id, update in reports:
                await store.update_execution(TENANT, execution_id, update, now)
        done = await by_target(ops, op_id)
        executions = [
            (t, e.state, e.version, e.progress, e.error, e.result) for t, e in sorted(done.items())
        ]
        op = (await ops.get(TENANT, op_id)).operation
        events = await store.events_after(TENANT, 0, limit=1000, operation_id=op_id)
        return (
            executions,
            (op.state, dict(op.counts), op.error),
            [(e.type, e.target, e.state, e.progress, dict(e.data)) for e in events],
        )

    one_by_one, batched = await run(batched=False), await run(batched=True)
    assert batched == one_by_one
    executions, (state, _, error), events = batched
    assert [e[1] for e in executions] == [State.SUCCEEDED, State.FAILED, State.FAILED]
    assert state == OperationState.FAILED and error is not None
    assert [e[0] for e in events].count("operation.failed") == 1
    assert any(e[4].get("reason") == "started" for e in events)


async def test_nothing_is_committed_before_the_whole_batch(
    store: Store, ops: Operations, store_url: str
) -> None:
    await create(ops, "a", "b")
    a, b = await claimed(ops, "a"), await claimed(ops, "b")
    inside: list[int] = []

    def admit(index: int, execution: Execution) -> None:
        if index == 1:  # the first report is applied, the transaction still open
            inside.append(committed_version(store_url, a.id))

    reports = [(a.id, ExecutionUpdate(progress=10)), (b.id, ExecutionUpdate(progress=20))]
    results = await store.update_executions(TENANT, reports, datetime.now(UTC), admit=admit)

    assert [r.version for r in results if isinstance(r, Execution)] == [3, 3]
    assert inside == [2]
    assert committed_version(store_url, a.id) == 3


async def test_a_value_the_database_refuses_refuses_only_its_report(
    store: Store, ops: Operations
) -> None:
    await create(ops, "a", "b")
    a, b = await claimed(ops, "a"), await claimed(ops, "b")
    reports = [
        (a.id, ExecutionUpdate(progress=10, details={"k\x00": "v"})),
        ("ex_\x00", ExecutionUpdate(progress=10)),
        (a.id, ExecutionUpdate(state=State.FAILED, error="nul \x00 here")),
        (b.id, ExecutionUpdate(progress=30)),
    ]
    results = await store.update_executions(TENANT, reports, datetime.now(UTC))

    assert isinstance(results[-1], Execution) and results[-1].progress == 30
    nul_details, nul_id, nul_error = results[:3]
    if store.name == "postgres":  # no NUL in text or jsonb there, as PATCH finds too
        assert all(type(r) is errors.Invalid for r in results[:3])
        assert (await store.get_execution(TENANT, a.id)).version == 2
    else:  # SQLite stores it
        assert isinstance(nul_details, Execution) and isinstance(nul_error, Execution)
        assert isinstance(nul_id, errors.NotFound)
    if store.name == "postgres":  # and one report alone is refused the same way
        for execution_id, update in reports[:3]:
            with pytest.raises(errors.Invalid) as alone:
                await store.update_execution(TENANT, execution_id, update, datetime.now(UTC))
            assert type(alone.value) is errors.Invalid


async def test_batches_crossing_the_same_operations_never_deadlock(ops: Operations) -> None:
    x = await by_target(ops, await create(ops, "a", "b"))
    y = await by_target(ops, await create(ops, "c", "d"))
    for target in "abcd":
        await claimed(ops, target)
    store = ops.store

    async def batch(reports: list[tuple[str, ExecutionUpdate]]) -> None:
        results = await store.update_executions(TENANT, reports, datetime.now(UTC))
        assert all(isinstance(r, Execution) for r in results), results

    for round_ in range(30):
        update = ExecutionUpdate(progress=round_)
        # each batch locks one operation's row, then the other's, in opposite orders
        await asyncio.gather(
            batch([(x["a"].id, update), (y["c"].id, update)]),
            batch([(y["d"].id, update), (x["b"].id, update)]),
        )
    assert {e.progress for e in await ops.executions(TENANT, x["a"].operation_id)} == {29}


async def test_the_service_wakes_and_aborts_per_report(ops: Operations) -> None:
    first = await create(ops, "a", "b", rollout=Rollout(abort_after_failures=1))
    second = await create(ops, "c")
    a, c = await claimed(ops, "a"), await claimed(ops, "c")
    woken: list[str] = []
    with ops.notifier.listening(woken.append):
        results = await ops.update_executions(
            TENANT,
            [
                (a.id, ExecutionUpdate(state=State.FAILED, error="boom")),
                (c.id, ExecutionUpdate(state=State.QUEUED)),  # given back: c's inbox wakes
                (c.id, ExecutionUpdate(progress=5, expected_version=1)),  # refused
                (a.id, ExecutionUpdate(details={"deep": _nested(200)})),  # too deep
            ],
        )
    assert [type(r) for r in results] == [Execution, Execution, errors.VersionMismatch,
                                          errors.Invalid]  # fmt: skip
    assert notify.operation_key(TENANT, first) in woken
    assert notify.operation_key(TENANT, second) in woken
    assert notify.inbox_key(TENANT, "c") in woken
    # the failure reached the threshold: b, still queued, was cancelled
    assert (await ops.get(TENANT, first)).operation.state is OperationState.FAILED
    assert (await by_target(ops, first))["b"].state is State.CANCELLED


def _nested(depth: int) -> Any:
    doc: Any = 1
    for _ in range(depth):
        doc = {"d": doc}
    return doc


def counting_runs(store: Store, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of each transaction of reports the store runs, from now on."""
    runs: list[int] = []
    original = store._update_reports  # type: ignore[attr-defined]

    async def counted(tenant: str, reports: Any, now: datetime, admit: Any) -> Any:
        runs.append(len(reports))
        return await original(tenant, reports, now, admit)

    monkeypatch.setattr(store, "_update_reports", counted)
    return runs


async def test_concurrent_calls_share_one_transaction_and_each_gets_its_own_answer(
    store: Store, ops: Operations, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Calls for a tenant that wait together go in one transaction; each call's admit
    sees its own reports by its own index, a refusal stays in its call, and a report
    sees what an earlier call's report in the same transaction did."""
    await create(ops, "a", "b", "c")
    a, b, c = [await claimed(ops, t) for t in ("a", "b", "c")]
    runs = counting_runs(store, monkeypatch)
    seen: list[tuple[str, int, str]] = []

    def admit_for(name: str, refuse: int | None = None) -> Any:
        def admit(index: int, execution: Execution) -> None:
            seen.append((name, index, execution.id))
            if index == refuse:
                raise errors.Forbidden(f"{name} refuses its report {index}")

        return admit

    now = datetime.now(UTC)
    one, two, three = await asyncio.gather(
        store.update_executions(
            TENANT, [(a.id, ExecutionUpdate(progress=10)), (b.id, ExecutionUpdate(progress=20))],
            now, admit=admit_for("one"),
        ),
        store.update_executions(
            TENANT, [(c.id, ExecutionUpdate(progress=30)), (a.id, ExecutionUpdate(progress=40))],
            now, admit=admit_for("two", refuse=0),
        ),
        store.update_executions(
            TENANT, [(b.id, ExecutionUpdate(progress=50))], now, admit=admit_for("three")
        ),
    )  # fmt: skip

    assert runs == [5]
    assert seen == [("one", 0, a.id), ("one", 1, b.id), ("two", 0, c.id), ("two", 1, a.id),
                    ("three", 0, b.id)]  # fmt: skip
    assert [len(one), len(two), len(three)] == [2, 2, 1]
    assert isinstance(two[0], errors.Forbidden)
    first_a, first_b = one
    later_a, [later_b] = two[1], three
    assert isinstance(first_a, Execution) and isinstance(later_a, Execution)
    assert isinstance(first_b, Execution) and isinstance(later_b, Execution)
    assert (first_a.progress, later_a.progress) == (10, 40)
    assert later_a.version == first_a.version + 1  # the second call saw the first's write
    assert later_b.version == first_b.version + 1
    assert (await store.get_execution(TENANT, a.id)).progress == 40
    assert (await store.get_execution(TENANT, b.id)).progress == 50
    assert (await store.get_execution(TENANT, c.id)).version == c.version  # refused: untouched


async def test_a_call_that_spoils_a_shared_transaction_fails_alone(
    store: Store, ops: Operations, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An admit that raises what is not a refusal aborts the shared transaction: it is
    rolled back, that call fails with what its admit raised, and the others go again
    together, stored once."""
    await create(ops, "a", "b")
    a, b = [await claimed(ops, t) for t in ("a", "b")]
    runs = counting_runs(store, monkeypatch)

    def broken(index: int, execution: Execution) -> None:
        raise RuntimeError("a bug in the caller's check")

    now = datetime.now(UTC)
    good, bad, again = await asyncio.gather(
        store.update_executions(TENANT, [(a.id, ExecutionUpdate(progress=10))], now),
        store.update_executions(TENANT, [(b.id, ExecutionUpdate(progress=20))], now, admit=broken),
        store.update_executions(TENANT, [(a.id, ExecutionUpdate(progress=30))], now),
        return_exceptions=True,
    )

    assert runs == [3, 2]
    assert isinstance(bad, RuntimeError) and str(bad) == "a bug in the caller's check"
    assert isinstance(good, list) and isinstance(again, list)
    [first], [second] = good, again
    assert isinstance(first, Execution) and isinstance(second, Execution)
    assert second.version == first.version + 1 == a.version + 2  # each stored once
    assert (await store.get_execution(TENANT, a.id)).progress == 30
    assert (await store.get_execution(TENANT, b.id)).version == b.version


async def test_a_shared_transaction_that_fails_as_a_whole_fails_every_call(
    store: Store, ops: Operations, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database failing the shared transaction (unreachable) answers every call
    that shared it, at once: none is run again behind the others' failures (each
    would wait out the same outage in turn)."""
    await create(ops, "a", "b")
    a, b = [await claimed(ops, t) for t in ("a", "b")]
    attempts: list[int] = []

    async def unreachable(tenant: str, reports: Any, now: datetime, admit: Any) -> Any:
        attempts.append(len(reports))
        raise errors.Unavailable("the database is unreachable")

    monkeypatch.setattr(store, "_update_reports", unreachable)
    now = datetime.now(UTC)
    answers = await asyncio.gather(
        store.update_executions(TENANT, [(a.id, ExecutionUpdate(progress=10))], now),
        store.update_executions(TENANT, [(a.id, ExecutionUpdate(progress=20))], now),
        store.update_executions(TENANT, [(b.id, ExecutionUpdate(progress=30))], now),
        return_exceptions=True,
    )
    assert attempts == [3]
    assert all(isinstance(x, errors.Unavailable) for x in answers)
    monkeypatch.undo()
    assert (await store.get_execution(TENANT, a.id)).version == a.version
    assert (await store.get_execution(TENANT, b.id)).version == b.version
