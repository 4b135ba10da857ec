"""The one transition table (docs/architecture.md) and the questions everything asks it."""

from __future__ import annotations

import itertools

import pytest

from opstatus.domain import errors, states
from opstatus.domain.states import OperationState, State, Via

# Written out from docs/architecture.md's table by hand, independently of states.TRANSITIONS.
ANYONE, RETRY, FORCE = Via.ANYONE, Via.RETRY, Via.FORCE
EXPECTED: dict[tuple[str, str], Via] = {
    ("scheduled", "queued"): ANYONE,
    ("scheduled", "cancelled"): ANYONE,
    ("queued", "dispatched"): ANYONE,
    ("queued", "cancelled"): ANYONE,
    ("queued", "timed_out"): ANYONE,
    ("dispatched", "acknowledged"): ANYONE,
    ("dispatched", "in_progress"): ANYONE,
    ("dispatched", "succeeded"): ANYONE,
    ("dispatched", "failed"): ANYONE,
    ("dispatched", "cancelled"): ANYONE,
    ("dispatched", "timed_out"): ANYONE,
    ("dispatched", "queued"): ANYONE,  # lease lost
    ("acknowledged", "in_progress"): ANYONE,
    ("acknowledged", "succeeded"): ANYONE,
    ("acknowledged", "failed"): ANYONE,
    ("acknowledged", "cancelled"): ANYONE,
    ("acknowledged", "timed_out"): ANYONE,
    ("in_progress", "in_progress"): ANYONE,  # progress
    ("in_progress", "succeeded"): ANYONE,
    ("in_progress", "failed"): ANYONE,
    ("in_progress", "cancelled"): FORCE,
    ("in_progress", "timed_out"): ANYONE,
    ("failed", "queued"): RETRY,
    ("timed_out", "queued"): RETRY,
    ("acknowledged", "queued"): RETRY,  # heartbeat lost: given back by the engine
    ("in_progress", "queued"): RETRY,  # heartbeat lost: given back by the engine
}

ALL_PAIRS = list(itertools.product(State, State))
TERMINAL_NAMES = {"succeeded", "failed", "timed_out", "cancelled"}


def _pair(key: tuple[State, State]) -> tuple[str, str]:
    return (key[0].value, key[1].value)


def test_state_vocabulary_matches_design() -> None:
    assert [s.value for s in State] == [
        "scheduled",
        "queued",
        "dispatched",
        "acknowledged",
        "in_progress",
        "succeeded",
        "failed",
        "timed_out",
        "cancelled",
    ]
    assert {s.value for s in OperationState} == {
        "scheduled",
        "queued",
        "running",
        "succeeded",
        "failed",
        "cancelled",
    }


def test_table_has_exactly_the_design_steps() -> None:
    actual = {_pair(k) for k in states.TRANSITIONS}
    expected = set(EXPECTED)
    assert actual - expected == set(), "steps the design does not list"
    assert expected - actual == set(), "design steps missing from the table"
    assert len(states.TRANSITIONS) == len(EXPECTED)


def test_table_demands_match_design() -> None:
    assert {_pair(k): v for k, v in states.TRANSITIONS.items()} == EXPECTED


@pytest.mark.parametrize("source", [State.FAILED, State.TIMED_OUT])
def test_retry_is_required_to_requeue(source: State) -> None:
    assert states.TRANSITIONS[(source, State.QUEUED)] is Via.RETRY


def test_force_is_required_to_cancel_running_work() -> None:
    assert states.TRANSITIONS[(State.IN_PROGRESS, State.CANCELLED)] is Via.FORCE


def test_only_the_design_steps_demand_retry_or_force() -> None:
    special = {_pair(k): v for k, v in states.TRANSITIONS.items() if v is not Via.ANYONE}
    assert special == {
        ("failed", "queued"): Via.RETRY,
        ("timed_out", "queued"): Via.RETRY,
        ("acknowledged", "queued"): Via.RETRY,
        ("in_progress", "queued"): Via.RETRY,
        ("in_progress", "cancelled"): Via.FORCE,
    }


def test_terminal_and_active_sets() -> None:
    assert {s.value for s in State if s.terminal} == TERMINAL_NAMES
    assert {s.value for s in states.TERMINAL} == TERMINAL_NAMES
    assert {s.value for s in State if s.active} == {"dispatched", "acknowledged", "in_progress"}
    assert {s.value for s in OperationState if s.terminal} == {
        "succeeded",
        "failed",
        "cancelled",
    }


@pytest.mark.parametrize("terminal", sorted(states.TERMINAL))
def test_terminal_states_leave_only_by_retry(terminal: State) -> None:
    for (old, new), via in states.TRANSITIONS.items():
        if old is terminal:
            assert via is Via.RETRY, (old, new)
            assert new is State.QUEUED, (old, new)
    for new in State:
        assert not states.allowed(terminal, new)
        assert not states.allowed(terminal, new, force=True)


@pytest.mark.parametrize("terminal", [State.SUCCEEDED, State.CANCELLED])
def test_succeeded_and_cancelled_are_final(terminal: State) -> None:
    assert states.successors(terminal) == frozenset()
    for new in State:
        assert not states.allowed(terminal, new, retry=True, force=True)


def test_successors_follow_the_table() -> None:
    for current in State:
        expected = {new for (old, new) in EXPECTED if old == current.value}
        assert {s.value for s in states.successors(current)} == expected


@pytest.mark.parametrize(("current", "new"), ALL_PAIRS, ids=lambda s: str(s))
@pytest.mark.parametrize("retry", [False, True], ids=["plain", "retry"])
@pytest.mark.parametrize("force", [False, True], ids=["noforce", "force"])
def test_allowed_and_check_agree_with_design(
    current: State, new: State, retry: bool, force: bool
) -> None:
    via = EXPECTED.get((current.value, new.value))
    expected = via is Via.ANYONE or (via is Via.RETRY and retry) or (via is Via.FORCE and force)
    assert states.allowed(current, new, retry=retry, force=force) is expected
    if expected:
        states.check(current, new, retry=retry, force=force)
    else:
        with pytest.raises(errors.Conflict) as caught:
            states.check(current, new, retry=retry, force=force)
        assert caught.value.state == current.value
        assert caught.value.code == "conflict"
        assert not isinstance(caught.value, errors.VersionMismatch)
        assert caught.value.detail


def test_check_out_of_terminal_names_the_state() -> None:
    with pytest.raises(errors.Conflict) as caught:
        states.check(State.SUCCEEDED, State.IN_PROGRESS)
    assert caught.value.state == "succeeded"
    assert "succeeded" in caught.value.detail


def test_check_explains_missing_force_and_retry() -> None:
    with pytest.raises(errors.Conflict, match="force") as forced:
        states.check(State.IN_PROGRESS, State.CANCELLED)
    assert forced.value.state == "in_progress"
    with pytest.raises(errors.Conflict, match="retry") as retried:
        states.check(State.FAILED, State.QUEUED)
    assert retried.value.state == "failed"


def test_conflict_is_an_opstatus_error() -> None:
    error = errors.Conflict("nope", state=State.QUEUED)
    assert isinstance(error, errors.DomainError)
    assert error.state == "queued"
    assert errors.Conflict("nope").state is None
