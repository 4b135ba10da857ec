"""Property tests: random action sequences against the domain's invariants.

An operation with 1..6 executions is built by folding fresh executions into an
empty operation; then random actions hit random executions. Refusals
(``DomainError``, or ``cancel`` answering ``None``) must change nothing;
accepted changes must follow the transition table and keep the operation's
derived fields equal to a from-scratch recomputation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opstatus.domain import changes, derive, errors, states
from opstatus.domain.records import Execution, ExecutionUpdate, Operation, Timeouts
from opstatus.domain.states import OperationState, State, Via

START = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
ACTIONS = ("apply_update", "dispatch", "release", "promote", "retry", "time_out", "cancel")
#: Actions that usually succeed from each state, weighted towards forward progress so
#: that runs get deep into the table before cancel/succeed absorb them; a quarter of
#: all draws still pick any action at all.
LIKELY: dict[State, tuple[str, ...]] = {
    State.SCHEDULED: ("promote", "promote", "promote", "cancel"),
    State.QUEUED: ("dispatch", "dispatch", "dispatch", "dispatch", "cancel", "time_out"),
    State.DISPATCHED: ("apply_update",) * 5 + ("release", "time_out", "cancel"),
    State.ACKNOWLEDGED: ("apply_update",) * 5 + ("time_out", "cancel"),
    State.IN_PROGRESS: ("apply_update",) * 5 + ("time_out", "cancel"),
    State.FAILED: ("retry",),
    State.TIMED_OUT: ("retry",),
    State.SUCCEEDED: ACTIONS,
    State.CANCELLED: ACTIONS,
}


def initial_execution(index: int, state: State, now: datetime) -> Execution:
    return Execution(
        id=f"ex-{index}",
        tenant="t1",
        operation_id="op-1",
        target=f"node-{index}",
        state=state,
        progress=0.0,
        eta=None,
        details={},
        error=None,
        result=None,
        attempt=1,
        version=1,
        queued_at=now if state is State.QUEUED else None,
        started_at=None,
        updated_at=now,
        finished_at=None,
        lease_expires_at=None,
    )


def initial_operation(now: datetime) -> Operation:
    return Operation(
        id="op-1",
        tenant="t1",
        number=1,
        kind="image-update",
        parameters={},
        internal=False,
        groups=(),
        schedule_at=None,
        timeouts=Timeouts(),
        retries=0,
        exclusive=False,
        idempotency_key=None,
        state=OperationState.QUEUED,
        counts=derive.empty_counts(),
        progress_sum=0,
        total=0,
        eta=None,
        error=None,
        result=None,
        created_at=now,
        started_at=None,
        updated_at=now,
        completed_at=None,
        version=1,
    )


def recomputed_counts(executions: Sequence[Execution]) -> dict[str, int]:
    counts = derive.empty_counts()
    for execution in executions:
        counts[execution.state.value] += 1
    return counts


def check_operation(operation: Operation, executions: Sequence[Execution]) -> None:
    counts = recomputed_counts(executions)
    assert dict(operation.counts) == counts
    assert operation.total == len(executions)
    assert operation.state is derive.operation_state(counts)
    expected_sum = sum(derive.contribution(e) for e in executions)
    assert operation.progress_sum == pytest.approx(expected_sum, abs=1e-9)
    assert 0.0 <= operation.progress <= 100.0
    assert (operation.completed_at is not None) == operation.state.terminal


def check_execution(execution: Execution) -> None:
    assert 0.0 <= execution.progress <= 100.0
    assert (execution.finished_at is not None) == execution.state.terminal
    if execution.state is State.SUCCEEDED:
        assert execution.progress == 100.0
    if execution.lease_expires_at is not None:
        assert execution.state is State.DISPATCHED


@st.composite
def updates(draw: st.DrawFn, current: Execution) -> ExecutionUpdate:
    """Mostly plausible reports (a listed next state, in-range progress), some hostile."""
    successors = sorted(states.successors(current.state)) or list(State)
    # Progress reports are what agents send most; the rest of the table is still reachable.
    reports = [s for s in (State.ACKNOWLEDGED, State.IN_PROGRESS) if s in successors]
    state = draw(
        st.one_of(
            st.sampled_from(reports or successors),
            st.sampled_from(successors),
            st.sampled_from(list(State)),
            st.none(),
        )
    )
    progress = draw(
        st.one_of(st.none(), st.integers(0, 100).map(float), st.integers(-5, 105).map(float))
    )
    version = draw(
        st.sampled_from(
            [None, None, current.version, current.version, current.version - 1, current.version + 1]
        )
    )
    return ExecutionUpdate(
        state=state,
        progress=progress,
        details=draw(st.none() | st.just({"k": "v"})),
        error=draw(st.none() | st.just("boom")),
        expected_version=version,
    )


def act(
    data: st.DataObject, action: str, execution: Execution, now: datetime
) -> tuple[Execution | None, dict[str, Any]]:
    """Perform ``action``; return the new record (``None`` if refused) and its arguments."""
    args: dict[str, Any] = {}
    try:
        if action == "apply_update":
            update = data.draw(updates(execution), label="update")
            args["update"] = update
            after = changes.apply_update(execution, update, now)
            # An update that asks for nothing returns the record itself: no change.
            return (None if after is execution else after), args
        if action == "dispatch":
            return changes.dispatch(execution, now, lease=30.0), args
        if action == "release":
            return changes.release(execution, now), args
        if action == "promote":
            return changes.promote(execution, now), args
        if action == "retry":
            return changes.retry(execution, now), args
        if action == "time_out":
            return changes.time_out(execution, now, "deadline passed"), args
        assert action == "cancel"
        args["force"] = force = data.draw(st.booleans(), label="force")
        return changes.cancel(execution, now, force=force), args
    except errors.DomainError as refused:
        args["refused"] = refused
        return None, args


def check_refusal(before: Execution, action: str, args: dict[str, Any]) -> None:
    """A refused action says why, naming the record or state it collided with."""
    refused = args.get("refused")
    if isinstance(refused, errors.VersionMismatch):
        assert refused.current is before
    if isinstance(refused, errors.Conflict):
        assert refused.state == before.state.value
    if action == "cancel" and refused is None:
        assert before.state.terminal or (before.state is State.IN_PROGRESS and not args["force"])


def check_step(
    before: Execution, after: Execution, action: str, args: dict[str, Any], now: datetime
) -> None:
    """Invariants (a) to (c) of one accepted change of one execution."""
    # (c) every accepted change raises the execution's version.
    assert after.version > before.version
    assert after.id == before.id
    check_execution(after)

    # (a) a terminal execution leaves its state only by retry(), to queued.
    if before.state.terminal:
        assert action == "retry", (before.state, action, args)
        assert after.state is State.QUEUED
        assert before.state in (State.FAILED, State.TIMED_OUT)

    # (b) every state change is a step of the table, taken with its demands met.
    if before.state is not after.state or before.state is State.IN_PROGRESS:
        key = (before.state, after.state)
        assert key in states.TRANSITIONS, (key, action, args)
        via = states.TRANSITIONS[key]
        if via is Via.RETRY:
            assert action == "retry"
        if via is Via.FORCE:
            assert action == "cancel" and args["force"] is True
    else:
        # State unchanged: a field-only report, only while a target holds the work.
        assert action == "apply_update"
        assert after.state.active
    # attempt counts lease losses and retries, nothing else.
    requeued = after.state is State.QUEUED and (
        before.state is State.DISPATCHED or before.state.terminal
    )
    assert after.attempt == before.attempt + (1 if requeued else 0), (before.state, action)
    if action == "dispatch":
        assert after.lease_expires_at == now + timedelta(seconds=30)


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_random_action_sequences_keep_invariants(data: st.DataObject) -> None:
    now = START
    n = data.draw(st.integers(1, 6), label="executions")
    initial_state = data.draw(st.sampled_from([State.QUEUED, State.SCHEDULED]), label="initial")
    executions = [initial_execution(i, initial_state, now) for i in range(n)]

    operation = initial_operation(now)
    for execution in executions:
        version = operation.version
        operation = derive.fold(operation, None, execution, now)
        assert operation.version == version + 1
    check_operation(operation, executions)
    assert operation.version == 1 + n

    steps = data.draw(st.integers(5, 60), label="steps")
    index = 0
    for _ in range(steps):
        now += timedelta(seconds=1)
        # Often stay on the same execution, so that long paths through the table happen.
        index = data.draw(st.just(index) | st.integers(0, n - 1), label="index")
        before = executions[index]
        action = data.draw(
            st.one_of(*[st.sampled_from(LIKELY[before.state])] * 3, st.sampled_from(ACTIONS)),
            label="action",
        )
        snapshot = dataclasses.replace(before)
        after, args = act(data, action, before, now)

        # Records are never mutated; a refusal leaves the execution (and its version) as it
        # was and says why.
        assert before == snapshot
        if after is None:
            check_refusal(before, action, args)
            assert executions[index].version == before.version
            continue

        check_step(before, after, action, args, now)

        # (d) folding the change keeps the operation equal to a recomputation.
        executions[index] = after
        previous = operation
        operation, events = changes.settle(operation, [(before, after)], now)
        assert operation.version > previous.version
        check_operation(operation, executions)
        assert events[0].type == f"execution.{after.state}"
        assert events[0].data["version"] == after.version
        if operation.state is not previous.state:
            assert [e.type for e in events[1:]] == [f"operation.{operation.state}"]
        else:
            assert len(events) == 1
