"""The one state vocabulary and the one transition table (docs/architecture.md)."""

from __future__ import annotations

import enum

from opstatus.domain import errors


class State(enum.StrEnum):
    """State of one execution (one target's part of an operation)."""

    SCHEDULED = "scheduled"  #: waits for ``schedule_at``
    QUEUED = "queued"  #: ready; waits in the target's inbox
    DISPATCHED = "dispatched"  #: delivered to the target, lease running
    ACKNOWLEDGED = "acknowledged"  #: the target accepted it
    IN_PROGRESS = "in_progress"  #: running; progress / eta / details may change
    SUCCEEDED = "succeeded"  #: done (terminal)
    FAILED = "failed"  #: the target reported failure (terminal)
    TIMED_OUT = "timed_out"  #: a deadline passed (terminal)
    CANCELLED = "cancelled"  #: cancelled by a client (terminal)

    @property
    def terminal(self) -> bool:
        """True once nothing but a retry can move the execution again."""
        return self in TERMINAL

    @property
    def active(self) -> bool:
        """True while a target holds the execution (dispatched up to in progress)."""
        return self in ACTIVE


class OperationState(enum.StrEnum):
    """State of an operation, derived from its executions (never set directly)."""

    SCHEDULED = "scheduled"  #: every execution waits for its schedule
    QUEUED = "queued"  #: none has started
    RUNNING = "running"  #: some started and some are not finished
    SUCCEEDED = "succeeded"  #: all succeeded
    FAILED = "failed"  #: all finished and at least one failed or timed out
    CANCELLED = "cancelled"  #: all finished, none failed, at least one cancelled

    @property
    def terminal(self) -> bool:
        """True once every execution is finished."""
        return self in OPERATION_TERMINAL


class Outcome(enum.StrEnum):
    """How a final operation went (``None`` while it runs); derived from its counts."""

    SUCCEEDED = "succeeded"  #: every execution succeeded
    PARTIALLY_FAILED = "partially_failed"  #: some failed or timed out, some succeeded
    FAILED = "failed"  #: some failed or timed out, none succeeded
    CANCELLED = "cancelled"  #: none failed, some were cancelled


class Via(enum.Enum):
    """What a step of the table demands of whoever takes it."""

    ANYONE = "anyone"  #: an ordinary report or engine step
    RETRY = "retry"  #: only a retry policy or an explicit retry
    FORCE = "force"  #: only a forced cancel


TERMINAL = frozenset({State.SUCCEEDED, State.FAILED, State.TIMED_OUT, State.CANCELLED})
ACTIVE = frozenset({State.DISPATCHED, State.ACKNOWLEDGED, State.IN_PROGRESS})
OPERATION_TERMINAL = frozenset(
    {OperationState.SUCCEEDED, OperationState.FAILED, OperationState.CANCELLED}
)

_S, _ANY = State, Via.ANYONE
#: Each state's steps: from -> {to: what the step demands}, flattened below.
_STEPS: dict[State, dict[State, Via]] = {
    _S.SCHEDULED: {_S.QUEUED: _ANY, _S.CANCELLED: _ANY},
    _S.QUEUED: {_S.DISPATCHED: _ANY, _S.CANCELLED: _ANY, _S.TIMED_OUT: _ANY},
    _S.DISPATCHED: {
        _S.ACKNOWLEDGED: _ANY, _S.IN_PROGRESS: _ANY, _S.SUCCEEDED: _ANY, _S.FAILED: _ANY,
        _S.CANCELLED: _ANY, _S.TIMED_OUT: _ANY,
        _S.QUEUED: _ANY,  # lease lost
    },
    _S.ACKNOWLEDGED: {
        _S.IN_PROGRESS: _ANY, _S.SUCCEEDED: _ANY, _S.FAILED: _ANY, _S.CANCELLED: _ANY,
        _S.TIMED_OUT: _ANY,
        _S.QUEUED: Via.RETRY,  # its agent went silent: given back
    },
    _S.IN_PROGRESS: {
        _S.IN_PROGRESS: _ANY,  # progress report
        _S.SUCCEEDED: _ANY, _S.FAILED: _ANY, _S.CANCELLED: Via.FORCE, _S.TIMED_OUT: _ANY,
        _S.QUEUED: Via.RETRY,  # its agent went silent: given back
    },
    _S.FAILED: {_S.QUEUED: Via.RETRY},
    _S.TIMED_OUT: {_S.QUEUED: Via.RETRY},
}  # fmt: skip
#: The transition table: (from, to) -> what the step demands. Nothing else lists steps.
TRANSITIONS: dict[tuple[State, State], Via] = {
    (old, new): via for old, steps in _STEPS.items() for new, via in steps.items()
}


def allowed(current: State, new: State, *, retry: bool = False, force: bool = False) -> bool:
    """Tell whether the table lets ``current`` step to ``new`` with these permissions."""
    via = TRANSITIONS.get((current, new))
    if via is None:
        return False
    if via is Via.RETRY:
        return retry
    if via is Via.FORCE:
        return force
    return True


def check(current: State, new: State, *, retry: bool = False, force: bool = False) -> None:
    """Raise :class:`errors.Conflict` carrying ``current`` unless the step is allowed."""
    if not allowed(current, new, retry=retry, force=force):
        via = TRANSITIONS.get((current, new))
        if via is Via.FORCE:
            detail = f"{current} -> {new} needs force"
        elif via is Via.RETRY:
            detail = f"{current} -> {new} only by a retry"
        elif current.terminal:
            detail = f"execution is {current} (terminal)"
        else:
            detail = f"{current} -> {new} is not a transition"
        raise errors.Conflict(detail, state=str(current))


def successors(current: State) -> frozenset[State]:
    """Every state the table lists after ``current`` (whatever the step demands)."""
    return frozenset(new for (old, new) in TRANSITIONS if old is current)
