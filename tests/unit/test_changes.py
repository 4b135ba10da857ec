"""Every way an execution changes (opstatus.domain.changes)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from opstatus.domain import changes, deadlines, derive, errors
from opstatus.domain.records import Execution, ExecutionUpdate, Operation, Timeouts, evolve
from opstatus.domain.states import OperationState, State

NOW = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
LATER = NOW + timedelta(seconds=30)
MakeExecution = Callable[..., Execution]
MakeOperation = Callable[..., Operation]

ACTIVE = [State.DISPATCHED, State.ACKNOWLEDGED, State.IN_PROGRESS]
NOT_ACTIVE = [s for s in State if s not in ACTIVE]
TERMINAL = [State.SUCCEEDED, State.FAILED, State.TIMED_OUT, State.CANCELLED]


# -- apply_update ----------------------------------------------------------------------


@pytest.mark.parametrize("expected_version", [0, 2, 7])
def test_version_mismatch_carries_the_current_record(
    make_execution: MakeExecution, expected_version: int
) -> None:
    current = make_execution(state=State.IN_PROGRESS, version=3 if expected_version != 3 else 4)
    update = ExecutionUpdate(state=State.SUCCEEDED, expected_version=expected_version)
    with pytest.raises(errors.VersionMismatch) as caught:
        changes.apply_update(current, update, LATER)
    assert caught.value.current is current
    assert caught.value.state == "in_progress"
    assert isinstance(caught.value, errors.Conflict)


def test_version_is_checked_before_anything_else(make_execution: MakeExecution) -> None:
    current = make_execution(state=State.SUCCEEDED, version=5)
    with pytest.raises(errors.VersionMismatch):
        changes.apply_update(current, ExecutionUpdate(progress=500, expected_version=4), LATER)


def test_matching_expected_version_is_accepted(make_execution: MakeExecution) -> None:
    current = make_execution(state=State.IN_PROGRESS, version=3)
    after = changes.apply_update(current, ExecutionUpdate(progress=40, expected_version=3), LATER)
    assert after.progress == 40.0
    assert after.version == 4


@pytest.mark.parametrize(
    ("current", "new"),
    [
        (State.QUEUED, State.SUCCEEDED),
        (State.QUEUED, State.IN_PROGRESS),
        (State.SCHEDULED, State.DISPATCHED),
        (State.ACKNOWLEDGED, State.QUEUED),
        (State.SUCCEEDED, State.IN_PROGRESS),
        (State.SUCCEEDED, State.SUCCEEDED),
        (State.CANCELLED, State.QUEUED),
        (State.FAILED, State.QUEUED),  # only a retry
        (State.TIMED_OUT, State.QUEUED),  # only a retry
        (State.IN_PROGRESS, State.CANCELLED),  # needs force
        (State.IN_PROGRESS, State.ACKNOWLEDGED),
        (State.DISPATCHED, State.DISPATCHED),
    ],
    ids=str,
)
def test_illegal_steps_raise_conflict(
    make_execution: MakeExecution, current: State, new: State
) -> None:
    execution = make_execution(state=current)
    with pytest.raises(errors.Conflict) as caught:
        changes.apply_update(execution, ExecutionUpdate(state=new), LATER)
    assert caught.value.state == current.value
    assert not isinstance(caught.value, errors.VersionMismatch)


@pytest.mark.parametrize("progress", [-0.1, -1, 100.5, 101, 1e9])
def test_progress_outside_range_is_invalid(make_execution: MakeExecution, progress: float) -> None:
    execution = make_execution(state=State.IN_PROGRESS)
    with pytest.raises(errors.Invalid):
        changes.apply_update(execution, ExecutionUpdate(progress=progress), LATER)
    with pytest.raises(errors.Invalid):
        changes.apply_update(
            execution, ExecutionUpdate(state=State.IN_PROGRESS, progress=progress), LATER
        )


@pytest.mark.parametrize("progress", [0, 0.0, 42.5, 100])
def test_progress_bounds_are_inclusive(make_execution: MakeExecution, progress: float) -> None:
    execution = make_execution(state=State.IN_PROGRESS)
    after = changes.apply_update(execution, ExecutionUpdate(progress=progress), LATER)
    assert after.progress == float(progress)
    assert isinstance(after.progress, float)


@pytest.mark.parametrize("source", ACTIVE)
def test_succeeded_sets_progress_100_and_finished_at(
    make_execution: MakeExecution, source: State
) -> None:
    execution = make_execution(
        state=source, progress=30.0, version=4, lease_expires_at=NOW + timedelta(minutes=1)
    )
    after = changes.apply_update(
        execution, ExecutionUpdate(state=State.SUCCEEDED, progress=60, result={"ok": 1}), LATER
    )
    assert after.state is State.SUCCEEDED
    assert after.progress == 100.0
    assert after.finished_at == LATER
    assert after.updated_at == LATER
    assert after.lease_expires_at is None
    assert after.result == {"ok": 1}
    assert after.version == 5


def test_failed_keeps_error_and_finishes(make_execution: MakeExecution) -> None:
    execution = make_execution(state=State.IN_PROGRESS, progress=30.0)
    after = changes.apply_update(
        execution, ExecutionUpdate(state=State.FAILED, error="disk full"), LATER
    )
    assert after.state is State.FAILED
    assert after.error == "disk full"
    assert after.finished_at == LATER
    assert after.progress == 30.0


def test_in_progress_report_updates_fields(make_execution: MakeExecution) -> None:
    eta = LATER + timedelta(minutes=5)
    execution = make_execution(state=State.IN_PROGRESS, details={"a": 1}, version=2)
    after = changes.apply_update(
        execution,
        ExecutionUpdate(state=State.IN_PROGRESS, progress=55, eta=eta, details={"b": 2}),
        LATER,
    )
    assert after.state is State.IN_PROGRESS
    assert after.progress == 55.0
    assert after.eta == eta
    assert after.details == {"a": 1, "b": 2}
    assert after.version == 3


def test_starting_sets_started_at_once(make_execution: MakeExecution) -> None:
    execution = make_execution(state=State.DISPATCHED)
    acked = changes.apply_update(execution, ExecutionUpdate(state=State.ACKNOWLEDGED), NOW)
    assert acked.started_at == NOW
    running = changes.apply_update(acked, ExecutionUpdate(state=State.IN_PROGRESS), LATER)
    assert running.started_at == NOW


@pytest.mark.parametrize("state", ACTIVE)
def test_field_only_update_while_active(make_execution: MakeExecution, state: State) -> None:
    execution = make_execution(state=state, version=2)
    after = changes.apply_update(
        execution, ExecutionUpdate(progress=10, details={"step": "pull"}), LATER
    )
    assert after.state is state
    assert after.progress == 10.0
    assert after.details == {"step": "pull"}
    assert after.version == 3
    assert after.updated_at == LATER


@pytest.mark.parametrize("state", NOT_ACTIVE)
def test_field_only_update_refused_when_not_active(
    make_execution: MakeExecution, state: State
) -> None:
    execution = make_execution(state=state)
    with pytest.raises(errors.Conflict) as caught:
        changes.apply_update(execution, ExecutionUpdate(progress=10), LATER)
    assert caught.value.state == state.value


def test_empty_update_changes_nothing(make_execution: MakeExecution) -> None:
    execution = make_execution(state=State.SUCCEEDED)
    assert changes.apply_update(execution, ExecutionUpdate(), LATER) is execution


def test_update_to_queued_releases_or_promotes(make_execution: MakeExecution) -> None:
    dispatched = make_execution(state=State.DISPATCHED, attempt=1)
    released = changes.apply_update(dispatched, ExecutionUpdate(state=State.QUEUED), LATER)
    assert released.state is State.QUEUED
    assert released.attempt == 2

    scheduled = make_execution(state=State.SCHEDULED, attempt=1)
    promoted = changes.apply_update(scheduled, ExecutionUpdate(state=State.QUEUED), LATER)
    assert promoted.state is State.QUEUED
    assert promoted.attempt == 1
    assert promoted.queued_at == LATER


# -- engine steps ----------------------------------------------------------------------


def test_dispatch_sets_lease(make_execution: MakeExecution) -> None:
    execution = make_execution(state=State.QUEUED, version=1)
    after = changes.dispatch(execution, LATER, lease=45)
    assert after.state is State.DISPATCHED
    assert after.lease_expires_at == LATER + timedelta(seconds=45)
    assert after.started_at == LATER
    assert after.version == 2


@pytest.mark.parametrize("state", [s for s in State if s is not State.QUEUED])
def test_dispatch_only_from_queued(make_execution: MakeExecution, state: State) -> None:
    with pytest.raises(errors.Conflict):
        changes.dispatch(make_execution(state=state), LATER, lease=45)


def test_release_increments_attempt_and_drops_lease(make_execution: MakeExecution) -> None:
    execution = changes.dispatch(make_execution(attempt=1, version=1), NOW, lease=60)
    after = changes.release(execution, LATER)
    assert after.state is State.QUEUED
    assert after.attempt == 2
    assert after.queued_at == LATER
    assert after.lease_expires_at is None
    assert after.started_at is None  # the next dispatch starts the new attempt
    assert after.version == 3


@pytest.mark.parametrize("state", [s for s in State if s is not State.DISPATCHED])
def test_release_only_from_dispatched(make_execution: MakeExecution, state: State) -> None:
    with pytest.raises(errors.Conflict) as caught:
        changes.release(make_execution(state=state), LATER)
    assert caught.value.state == state.value


def test_promote(make_execution: MakeExecution) -> None:
    after = changes.promote(make_execution(state=State.SCHEDULED, queued_at=None), LATER)
    assert after.state is State.QUEUED
    assert after.queued_at == LATER
    assert after.attempt == 1


@pytest.mark.parametrize("state", [s for s in State if s is not State.SCHEDULED])
def test_promote_only_from_scheduled(make_execution: MakeExecution, state: State) -> None:
    # dispatched -> queued is a lease loss, which must count an attempt (release)
    with pytest.raises(errors.Conflict) as caught:
        changes.promote(make_execution(state=state), LATER)
    assert caught.value.state == state.value


@pytest.mark.parametrize("state", [State.FAILED, State.TIMED_OUT])
def test_retry_resets(make_execution: MakeExecution, state: State) -> None:
    execution = make_execution(
        state=state,
        progress=70.0,
        error="boom",
        eta=NOW,
        attempt=2,
        version=6,
        started_at=NOW,
        finished_at=NOW,
    )
    after = changes.retry(execution, LATER)
    assert after.state is State.QUEUED
    assert after.attempt == 3
    assert after.progress == 0.0
    assert after.error is None
    assert after.eta is None
    assert after.finished_at is None
    assert after.started_at is None  # the next dispatch starts the new attempt
    assert after.queued_at == LATER
    assert after.version == 7


def test_retried_attempt_runs_its_own_run_timeout(
    make_execution: MakeExecution, make_operation: MakeOperation
) -> None:
    # Attempt 2's run timeout counts from attempt 2's dispatch, not from attempt 1's.
    op = make_operation(timeouts=Timeouts(run=30.0), retries=1)
    first = changes.dispatch(make_execution(), NOW, lease=60)
    timed_out = changes.time_out(first, NOW + timedelta(seconds=30), "still running after 30 s")
    requeued = changes.retry(timed_out, NOW + timedelta(seconds=31))
    again = NOW + timedelta(seconds=40)
    second = changes.dispatch(requeued, again, lease=60)
    running = changes.apply_update(second, ExecutionUpdate(state=State.IN_PROGRESS), again)
    assert running.started_at == again
    assert deadlines.due(running, op) == again + timedelta(seconds=30)


@pytest.mark.parametrize("state", [s for s in State if s not in (State.FAILED, State.TIMED_OUT)])
def test_retry_only_from_failed_or_timed_out(make_execution: MakeExecution, state: State) -> None:
    with pytest.raises(errors.Conflict) as caught:
        changes.retry(make_execution(state=state), LATER)
    assert caught.value.state == state.value


@pytest.mark.parametrize(
    "state", [State.QUEUED, State.DISPATCHED, State.ACKNOWLEDGED, State.IN_PROGRESS]
)
def test_time_out(make_execution: MakeExecution, state: State) -> None:
    execution = make_execution(state=state, lease_expires_at=NOW)
    after = changes.time_out(execution, LATER, "lease expired")
    assert after.state is State.TIMED_OUT
    assert after.error == "lease expired"
    assert after.finished_at == LATER
    assert after.lease_expires_at is None


@pytest.mark.parametrize("state", [State.SCHEDULED, *TERMINAL])
def test_time_out_refused(make_execution: MakeExecution, state: State) -> None:
    with pytest.raises(errors.Conflict):
        changes.time_out(make_execution(state=state), LATER, "late")


@pytest.mark.parametrize(
    "state", [State.SCHEDULED, State.QUEUED, State.DISPATCHED, State.ACKNOWLEDGED]
)
@pytest.mark.parametrize("force", [False, True])
def test_cancel_unstarted_work(make_execution: MakeExecution, state: State, force: bool) -> None:
    after = changes.cancel(make_execution(state=state), LATER, force=force)
    assert after is not None
    assert after.state is State.CANCELLED
    assert after.finished_at == LATER


@pytest.mark.parametrize("state", TERMINAL)
@pytest.mark.parametrize("force", [False, True])
def test_cancel_terminal_returns_none(
    make_execution: MakeExecution, state: State, force: bool
) -> None:
    assert changes.cancel(make_execution(state=state), LATER, force=force) is None


def test_cancel_running_needs_force(make_execution: MakeExecution) -> None:
    execution = make_execution(state=State.IN_PROGRESS, version=3)
    assert changes.cancel(execution, LATER, force=False) is None
    forced = changes.cancel(execution, LATER, force=True)
    assert forced is not None
    assert forced.state is State.CANCELLED
    assert forced.version == 4


# -- events and settle -----------------------------------------------------------------


def test_execution_event(make_execution: MakeExecution) -> None:
    before = make_execution(state=State.IN_PROGRESS, progress=20.0, version=3)
    after = changes.apply_update(before, ExecutionUpdate(state=State.FAILED, error="boom"), LATER)
    event = changes.execution_event(before, after, LATER, reason="agent", actor=None)
    assert event.type == "execution.failed"
    assert event.state == "failed"
    assert event.seq == 0
    assert event.execution_id == after.id
    assert event.operation_id == after.operation_id
    assert event.target == after.target
    assert event.created_at == LATER
    assert event.data == {
        "version": 4,
        "attempt": 1,
        "from": "in_progress",
        "error": "boom",
        "reason": "agent",
    }


def test_execution_event_for_new_execution(make_execution: MakeExecution) -> None:
    event = changes.execution_event(None, make_execution(), NOW)
    assert event.type == "execution.queued"
    assert "from" not in event.data


def test_settle_folds_and_emits_events(
    make_execution: MakeExecution, make_operation: MakeOperation
) -> None:
    a = make_execution(id="a", target="a")
    b = make_execution(id="b", target="b")
    operation, events = changes.settle(make_operation(), [(None, a), (None, b)], NOW)
    assert operation.total == 2
    assert operation.state is OperationState.QUEUED
    assert [e.type for e in events] == ["execution.queued", "execution.queued"]

    a2 = changes.dispatch(a, LATER, lease=60)
    operation, events = changes.settle(operation, [(a, a2)], LATER)
    assert operation.state is OperationState.RUNNING
    assert [e.type for e in events] == ["execution.dispatched", "operation.running"]
    assert events[-1].data["counts"] == operation.counts
    assert events[-1].data["version"] == operation.version

    a3 = changes.cancel(a2, LATER, force=False)
    b3 = changes.cancel(b, LATER, force=False)
    assert a3 is not None and b3 is not None
    operation, events = changes.settle(operation, [(a2, a3), (b, b3)], LATER)
    assert operation.state is OperationState.CANCELLED
    assert operation.completed_at == LATER
    assert operation.progress == 100.0
    assert [e.type for e in events] == [
        "execution.cancelled",
        "execution.cancelled",
        "operation.cancelled",
    ]
    expected = derive.empty_counts()
    expected["cancelled"] = 2
    assert operation.counts == expected


def test_settle_without_state_change_emits_no_operation_event(
    make_execution: MakeExecution, make_operation: MakeOperation
) -> None:
    a = make_execution(state=State.IN_PROGRESS)
    operation, _ = changes.settle(make_operation(), [(None, a)], NOW)
    a2 = changes.apply_update(a, ExecutionUpdate(progress=50), LATER)
    settled, events = changes.settle(operation, [(a, a2)], LATER)
    assert [e.type for e in events] == ["execution.in_progress"]
    assert settled.progress == 50.0
    assert settled.version == operation.version + 1


def test_records_are_not_mutated(make_execution: MakeExecution) -> None:
    execution = make_execution(state=State.IN_PROGRESS, details={"a": 1})
    snapshot = evolve(execution)
    changes.apply_update(execution, ExecutionUpdate(details={"b": 2}, progress=5), LATER)
    assert execution == snapshot


# -- deliver and force (a device that learnt of its work another way) ---------------------
@pytest.mark.parametrize(
    ("start", "new"),
    [
        (State.QUEUED, State.ACKNOWLEDGED),
        (State.QUEUED, State.IN_PROGRESS),
        (State.QUEUED, State.SUCCEEDED),
        (State.QUEUED, State.FAILED),
        (State.SCHEDULED, State.ACKNOWLEDGED),
        (State.SCHEDULED, State.SUCCEEDED),
    ],
)
def test_deliver_takes_the_inbox_steps_first(
    make_execution: MakeExecution, start: State, new: State
) -> None:
    current = make_execution(state=start, started_at=None, version=1)
    with pytest.raises(errors.Conflict):
        changes.apply_update(current, ExecutionUpdate(state=new), LATER)
    after = changes.apply_update(current, ExecutionUpdate(state=new, deliver=True), LATER)
    assert after.state is new
    assert after.started_at == LATER
    assert after.lease_expires_at is None
    assert after.version > current.version


@pytest.mark.parametrize("new", [State.CANCELLED, State.TIMED_OUT])
def test_deliver_leaves_what_queued_work_can_take_itself(
    make_execution: MakeExecution, new: State
) -> None:
    current = make_execution(state=State.QUEUED, started_at=None)
    after = changes.apply_update(current, ExecutionUpdate(state=new, deliver=True), LATER)
    assert after.state is new and after.started_at is None


@pytest.mark.parametrize("start", TERMINAL)
def test_deliver_refuses_with_the_real_state(make_execution: MakeExecution, start: State) -> None:
    current = make_execution(state=start)
    with pytest.raises(errors.Conflict) as caught:
        changes.apply_update(current, ExecutionUpdate(state=State.SUCCEEDED, deliver=True), LATER)
    assert caught.value.state == str(start)
    assert changes.delivered(current, State.SUCCEEDED, LATER) is current


def test_force_allows_cancelling_work_in_progress(make_execution: MakeExecution) -> None:
    current = make_execution(state=State.IN_PROGRESS)
    with pytest.raises(errors.Conflict):
        changes.apply_update(current, ExecutionUpdate(state=State.CANCELLED), LATER)
    after = changes.apply_update(current, ExecutionUpdate(state=State.CANCELLED, force=True), LATER)
    assert after.state is State.CANCELLED and after.finished_at == LATER


@pytest.mark.parametrize("state", [State.ACKNOWLEDGED, State.IN_PROGRESS])
def test_started_work_is_given_back_only_by_the_heartbeat(
    make_execution: MakeExecution, state: State
) -> None:
    started = make_execution(state=state, attempt=1, progress=40.0)
    with pytest.raises(errors.Conflict):  # no explicit retry of unfinished work
        changes.retry(started, NOW)
    with pytest.raises(errors.Conflict):  # nor an agent's report
        changes.apply_update(started, ExecutionUpdate(state=State.QUEUED), NOW)
    back = changes.give_back(started, NOW)
    assert (back.state, back.attempt, back.progress, back.started_at) == (
        State.QUEUED, 2, 0.0, None,
    )  # fmt: skip


def test_heartbeat_deadline_follows_the_last_report(
    make_execution: MakeExecution, make_operation: Callable[..., Operation]
) -> None:
    op = make_operation(timeouts=Timeouts(heartbeat=30, run=100))
    running = make_execution(state=State.IN_PROGRESS, started_at=NOW, updated_at=NOW)
    assert deadlines.due(running, op) == NOW + timedelta(seconds=30)
    later = evolve(running, updated_at=NOW + timedelta(seconds=80))
    assert deadlines.due(later, op) == NOW + timedelta(seconds=100)  # the run ends first
    assert deadlines.timed(later, op).lease_expires_at == NOW + timedelta(seconds=110)
    assert deadlines.due(running, make_operation()) is None  # neither deadline set
