"""The operation's state, progress and ETA, derived from its executions (docs/architecture.md)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta

import pytest

from opstatus.domain import changes, derive
from opstatus.domain.records import Execution, Operation, evolve
from opstatus.domain.states import OperationState, Outcome, State

NOW = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
S = State
O = OperationState  # noqa: E741


def counts_of(executions: Iterable[State]) -> dict[str, int]:
    counts = derive.empty_counts()
    for state, n in Counter(executions).items():
        counts[state.value] += n
    return counts


def test_empty_counts_lists_every_state_at_zero() -> None:
    assert derive.empty_counts() == {s.value: 0 for s in State}
    assert derive.empty_counts() is not derive.empty_counts()


@pytest.mark.parametrize(
    ("executions", "expected"),
    [
        # scheduled: all scheduled
        ([S.SCHEDULED], O.SCHEDULED),
        ([S.SCHEDULED] * 3, O.SCHEDULED),
        # queued: none started
        ([S.QUEUED], O.QUEUED),
        ([S.QUEUED] * 4, O.QUEUED),
        ([S.SCHEDULED, S.QUEUED], O.QUEUED),
        # running: otherwise, while any is non-terminal
        ([S.DISPATCHED], O.RUNNING),
        ([S.ACKNOWLEDGED], O.RUNNING),
        ([S.IN_PROGRESS], O.RUNNING),
        ([S.QUEUED, S.DISPATCHED], O.RUNNING),
        ([S.SCHEDULED, S.IN_PROGRESS], O.RUNNING),
        ([S.SUCCEEDED, S.QUEUED], O.RUNNING),
        ([S.SUCCEEDED, S.SCHEDULED], O.RUNNING),
        ([S.FAILED, S.IN_PROGRESS], O.RUNNING),
        ([S.CANCELLED, S.ACKNOWLEDGED], O.RUNNING),
        ([S.TIMED_OUT, S.SUCCEEDED, S.DISPATCHED], O.RUNNING),
        # succeeded: all succeeded
        ([S.SUCCEEDED], O.SUCCEEDED),
        ([S.SUCCEEDED] * 5, O.SUCCEEDED),
        # failed: any failed or timed out
        ([S.FAILED], O.FAILED),
        ([S.TIMED_OUT], O.FAILED),
        ([S.SUCCEEDED, S.FAILED], O.FAILED),
        ([S.SUCCEEDED, S.TIMED_OUT], O.FAILED),
        ([S.CANCELLED, S.FAILED], O.FAILED),
        ([S.CANCELLED, S.TIMED_OUT, S.SUCCEEDED], O.FAILED),
        # else cancelled
        ([S.CANCELLED], O.CANCELLED),
        ([S.CANCELLED] * 3, O.CANCELLED),
        ([S.SUCCEEDED, S.CANCELLED], O.CANCELLED),
    ],
    ids=lambda v: "+".join(s.value for s in v) if isinstance(v, list) else str(v),
)
def test_operation_state_rules(executions: list[State], expected: OperationState) -> None:
    assert derive.operation_state(counts_of(executions)) is expected


def test_operation_state_accepts_sparse_counts() -> None:
    assert derive.operation_state({"succeeded": 2}) is O.SUCCEEDED
    assert derive.operation_state({"scheduled": 1}) is O.SCHEDULED
    assert derive.operation_state({"queued": 1, "in_progress": 1}) is O.RUNNING
    assert derive.operation_state({"failed": 1, "succeeded": 0}) is O.FAILED


@pytest.mark.parametrize("state", list(State))
def test_contribution_counts_terminal_as_100(state: State) -> None:
    execution = _execution(state=state, progress=30.0)
    assert derive.contribution(execution) == (100.0 if state.terminal else 30.0)


# -- fold ------------------------------------------------------------------------------


def _execution(**overrides: object) -> Execution:
    fields: dict[str, object] = {
        "id": "ex-1",
        "tenant": "t1",
        "operation_id": "op-1",
        "target": "node-1",
        "state": State.QUEUED,
        "progress": 0.0,
        "eta": None,
        "details": {},
        "error": None,
        "result": None,
        "attempt": 1,
        "version": 1,
        "queued_at": NOW,
        "started_at": None,
        "updated_at": NOW,
        "finished_at": None,
        "lease_expires_at": None,
    }
    fields.update(overrides)
    return Execution(**fields)  # type: ignore[arg-type]


def _fold_all(
    operation: Operation, executions: Iterable[Execution], now: datetime = NOW
) -> Operation:
    for execution in executions:
        operation = derive.fold(operation, None, execution, now)
    return operation


def test_fold_new_executions(make_operation: Callable[..., Operation]) -> None:
    operation = _fold_all(
        make_operation(),
        [_execution(id=f"ex-{i}", target=f"node-{i}") for i in range(3)],
    )
    assert operation.total == 3
    assert operation.counts == counts_of([S.QUEUED] * 3)
    assert operation.state is O.QUEUED
    assert operation.version == 4
    assert operation.progress == 0.0
    assert operation.started_at is None
    assert operation.completed_at is None


def test_fold_scheduled_executions_make_scheduled_operation(
    make_operation: Callable[..., Operation],
) -> None:
    operation = _fold_all(make_operation(), [_execution(state=S.SCHEDULED)] * 2)
    assert operation.state is O.SCHEDULED


def test_fold_moves_counts_and_timestamps(make_operation: Callable[..., Operation]) -> None:
    first = _execution(id="a", target="a")
    second = _execution(id="b", target="b")
    operation = _fold_all(make_operation(), [first, second])

    later = NOW + timedelta(seconds=10)
    running = evolve(first, state=S.IN_PROGRESS, progress=50.0, version=2)
    operation = derive.fold(operation, first, running, later)
    assert operation.state is O.RUNNING
    assert operation.counts == counts_of([S.IN_PROGRESS, S.QUEUED])
    assert operation.started_at == later
    assert operation.updated_at == later
    assert operation.progress == 25.0

    done = evolve(running, state=S.SUCCEEDED, progress=100.0, version=3)
    operation = derive.fold(operation, running, done, later + timedelta(seconds=1))
    assert operation.progress == 50.0
    assert operation.started_at == later  # the first start sticks
    assert operation.completed_at is None

    end = later + timedelta(seconds=5)
    failed = evolve(second, state=S.FAILED, progress=10.0, error="disk full", version=2)
    operation = derive.fold(operation, second, failed, end)
    assert operation.state is O.FAILED
    assert operation.progress == 100.0  # terminal executions count 100
    assert operation.completed_at == end
    assert operation.error is None  # fold leaves it to error_summary (see below)
    assert operation.eta is None
    assert operation.version == 6

    requeued = evolve(failed, state=S.QUEUED, progress=0.0, error=None, version=3)
    operation = derive.fold(operation, failed, requeued, end + timedelta(seconds=1))
    assert operation.state is O.RUNNING
    assert operation.completed_at is None
    assert operation.progress == 50.0


@pytest.mark.parametrize(
    ("progress", "expected"),
    [([0.0, 0.0], 0.0), ([50.0, 0.0], 25.0), ([10.0, 20.0, 30.0], 20.0), ([33.0, 34.0], 33.5)],
)
def test_progress_is_the_mean(
    make_operation: Callable[..., Operation], progress: list[float], expected: float
) -> None:
    executions = [
        _execution(id=str(i), state=S.IN_PROGRESS, progress=p) for i, p in enumerate(progress)
    ]
    operation = _fold_all(make_operation(), executions)
    assert operation.progress == expected
    assert operation.progress_sum == sum(progress)


def test_progress_counts_terminal_executions_as_100(
    make_operation: Callable[..., Operation],
) -> None:
    executions = [
        _execution(id="a", state=S.FAILED, progress=20.0),
        _execution(id="b", state=S.CANCELLED, progress=0.0),
        _execution(id="c", state=S.IN_PROGRESS, progress=40.0),
        _execution(id="d", state=S.QUEUED, progress=0.0),
    ]
    operation = _fold_all(make_operation(), executions)
    assert operation.progress == 60.0  # (100 + 100 + 40 + 0) / 4


def test_progress_of_an_empty_operation_is_zero(
    make_operation: Callable[..., Operation],
) -> None:
    assert make_operation().progress == 0.0


# -- eta -------------------------------------------------------------------------------


def _running(make_operation: Callable[..., Operation], **fields: object) -> Operation:
    base: dict[str, object] = {
        "state": O.RUNNING,
        "total": 2,
        "progress_sum": 50.0,
        "started_at": NOW - timedelta(seconds=100),
    }
    base.update(fields)
    return make_operation(**base)


def test_eta_reported_wins(make_operation: Callable[..., Operation]) -> None:
    reported = NOW + timedelta(hours=1)
    assert derive.eta(_running(make_operation, eta=reported), NOW) == reported


def test_eta_extrapolated_from_progress_rate(make_operation: Callable[..., Operation]) -> None:
    # 25 % in 100 s -> 100 % after 400 s
    operation = _running(make_operation)
    assert operation.progress == 25.0
    assert derive.eta(operation, NOW) == NOW - timedelta(seconds=100) + timedelta(seconds=400)


def test_eta_unknown_without_progress_or_start(
    make_operation: Callable[..., Operation],
) -> None:
    assert derive.eta(_running(make_operation, progress_sum=0.0), NOW) is None
    assert derive.eta(_running(make_operation, started_at=None), NOW) is None


@pytest.mark.parametrize("state", [O.SUCCEEDED, O.FAILED, O.CANCELLED])
def test_eta_none_once_finished(
    make_operation: Callable[..., Operation], state: OperationState
) -> None:
    operation = _running(make_operation, state=state, eta=NOW + timedelta(hours=1))
    assert derive.eta(operation, NOW) is None


def test_fold_keeps_reported_eta_while_running(
    make_operation: Callable[..., Operation],
) -> None:
    reported = NOW + timedelta(minutes=5)
    queued = _execution()
    operation = _fold_all(make_operation(), [queued, _execution(id="b")])
    running = evolve(queued, state=S.IN_PROGRESS, progress=10.0, eta=reported, version=2)
    operation = derive.fold(operation, queued, running, NOW)
    assert operation.eta == reported
    assert derive.eta(operation, NOW) == reported


@pytest.mark.parametrize(
    ("executions", "expected"),
    [
        ([S.QUEUED], None),
        ([S.SUCCEEDED, S.IN_PROGRESS], None),
        ([S.FAILED, S.SCHEDULED], None),
        ([S.SUCCEEDED] * 3, Outcome.SUCCEEDED),
        ([S.SUCCEEDED, S.FAILED], Outcome.PARTIALLY_FAILED),
        ([S.SUCCEEDED, S.TIMED_OUT, S.CANCELLED], Outcome.PARTIALLY_FAILED),
        ([S.FAILED, S.TIMED_OUT], Outcome.FAILED),
        ([S.FAILED, S.CANCELLED, S.CANCELLED], Outcome.FAILED),
        ([S.CANCELLED, S.CANCELLED], Outcome.CANCELLED),
        ([S.SUCCEEDED, S.CANCELLED, S.CANCELLED], Outcome.CANCELLED),
    ],
)
def test_outcome_colours_the_final_operation(
    executions: list[State], expected: Outcome | None
) -> None:
    assert derive.outcome(counts_of(executions)) is expected


def _settled(
    operation: Operation, stored: list[Execution], changes_: list[tuple[Execution, Execution]]
) -> Operation:
    """Fold changes as a store does: with the failures as stored before them."""
    failures = None
    if derive.touches_failures(changes_):
        failures = sorted(
            (e for e in stored if e.state in derive.FAILURES), key=lambda e: (e.target, e.id)
        )
    folded, _ = changes.settle(operation, changes_, NOW, failures=failures)
    return folded


def test_error_counts_every_failure_and_names_the_first_few(
    make_operation: Callable[..., Operation],
) -> None:
    queued = [_execution(id=f"ex-{t}", target=t) for t in "abcde"]
    operation = _fold_all(make_operation(), queued)
    stored = list(queued)
    for index, (target, reason) in enumerate(
        [("b", "no power"), ("a", "disk full"), ("d", None), ("e", "fan")]
    ):
        before = next(e for e in stored if e.target == target)
        state = S.TIMED_OUT if reason is None else S.FAILED
        after = evolve(before, state=state, error=reason, version=2)
        operation = _settled(operation, stored, [(before, after)])
        stored = [after if e.id == after.id else e for e in stored]
        if index == 1:  # two failures: both named, not only the last
            assert operation.error == "2 of 5 executions failed: a: disk full; b: no power"
    assert operation.error == (
        "4 of 5 executions failed: a: disk full; b: no power; d: timed_out; and 1 more"
    )


def test_error_clears_when_the_failure_is_retried(
    make_operation: Callable[..., Operation],
) -> None:
    first = _execution(id="ex-a", target="a")
    operation = _fold_all(make_operation(), [first])
    failed = evolve(first, state=S.FAILED, error="disk full", version=2)
    operation = _settled(operation, [first], [(first, failed)])
    assert operation.error == "1 of 1 executions failed: a: disk full"
    retried = evolve(failed, state=S.QUEUED, error=None, version=3)
    operation = _settled(operation, [failed], [(failed, retried)])
    assert operation.error is None
    cancelled = evolve(retried, state=S.CANCELLED, version=4)
    operation = _settled(operation, [retried], [(retried, cancelled)])
    assert operation.error is None  # no stale error on the cancelled operation
    assert derive.outcome(operation.counts) is Outcome.CANCELLED


def test_an_unrelated_change_keeps_the_error(make_operation: Callable[..., Operation]) -> None:
    a, b = _execution(id="ex-a", target="a"), _execution(id="ex-b", target="b")
    operation = _fold_all(make_operation(), [a, b])
    failed = evolve(a, state=S.FAILED, error="disk full", version=2)
    operation = _settled(operation, [a, b], [(a, failed)])
    running = evolve(b, state=S.IN_PROGRESS, progress=5.0, version=2)
    assert not derive.touches_failures([(b, running)])
    assert _settled(operation, [failed, b], [(b, running)]).error == operation.error
