"""What an operation is, derived from what its executions are."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from opstatus.domain.records import Execution, Operation, evolve
from opstatus.domain.states import OperationState, Outcome, State

#: execution states that count as failures of their operation
FAILURES = (State.FAILED, State.TIMED_OUT)
#: failures an operation's ``error`` names at most (it counts them all)
ERRORS_SHOWN = 3


def empty_counts() -> dict[str, int]:
    """A counts mapping with every execution state at zero."""
    return {str(s): 0 for s in State}


def operation_state(counts: Mapping[str, int]) -> OperationState:
    """The operation state implied by ``counts`` (executions per state)."""
    total = sum(counts.values())
    scheduled = counts.get(State.SCHEDULED, 0)
    waiting = scheduled + counts.get(State.QUEUED, 0)
    finished = sum(counts.get(s, 0) for s in State if s.terminal)
    if total and scheduled == total:
        return OperationState.SCHEDULED
    if waiting == total:
        return OperationState.QUEUED
    if finished < total:
        return OperationState.RUNNING
    if counts.get(State.SUCCEEDED, 0) == total:
        return OperationState.SUCCEEDED
    if counts.get(State.FAILED, 0) + counts.get(State.TIMED_OUT, 0) > 0:
        return OperationState.FAILED
    return OperationState.CANCELLED


def outcome(counts: Mapping[str, int]) -> Outcome | None:
    """How the operation went once every execution is final; ``None`` before."""
    if not operation_state(counts).terminal:
        return None
    failed = sum(counts.get(s, 0) for s in FAILURES)
    succeeded = counts.get(State.SUCCEEDED, 0)
    if not failed:
        return Outcome.CANCELLED if counts.get(State.CANCELLED, 0) else Outcome.SUCCEEDED
    return Outcome.PARTIALLY_FAILED if succeeded else Outcome.FAILED


def failing(
    stored: Sequence[Execution], changes: Sequence[tuple[Execution | None, Execution]]
) -> list[Execution]:
    """The failures after ``changes``, by target: ``stored`` (failures as they were, in
    target order, at least ``ERRORS_SHOWN`` + len(changes) of them when there are that
    many) without the executions that changed, plus those that changed into one."""
    changed = {after.id: after for _, after in changes}
    kept = [e for e in stored if e.id not in changed]
    kept += [e for e in changed.values() if e.state in FAILURES]
    return sorted(kept, key=lambda e: (e.target, e.id))


def touches_failures(changes: Sequence[tuple[Execution | None, Execution]]) -> bool:
    """Whether a change enters or leaves a failure state (the ``error`` summary moves)."""
    return any(
        after.state in FAILURES or (before is not None and before.state in FAILURES)
        for before, after in changes
    )


def error_summary(operation: Operation, failures: Sequence[Execution]) -> str | None:
    """The operation's ``error``: how many executions failed now and the first few as
    ``target: reason``; ``None`` when none has."""
    count = sum(operation.counts.get(s, 0) for s in FAILURES)
    if not count:
        return None
    shown = failures[:ERRORS_SHOWN]
    named = "; ".join(f"{e.target}: {e.error or e.state}" for e in shown)
    more = count - len(shown)
    tail = f"; and {more} more" if more > 0 else ""
    return f"{count} of {operation.total} executions failed: {named}{tail}"


def summarize(operation: Operation, executions: Sequence[Execution]) -> Operation:
    """Recompute an operation's aggregates from all of its executions at once."""
    counts = empty_counts()
    for execution in executions:
        counts[execution.state] += 1
    state = operation_state(counts)
    return evolve(
        operation,
        counts=counts,
        progress_sum=sum(contribution(e) for e in executions),
        total=len(executions),
        state=state,
    )


def contribution(execution: Execution) -> float:
    """What one execution adds to its operation's progress sum."""
    return 100.0 if execution.state.terminal else execution.progress


def eta(operation: Operation, now: datetime) -> datetime | None:
    """Reported ETA, else extrapolated from the progress rate since the start."""
    if operation.state.terminal:
        return None
    if operation.eta is not None:
        return operation.eta
    progress = operation.progress
    if operation.started_at is None or progress <= 0:
        return None
    elapsed = now - operation.started_at
    return operation.started_at + elapsed * (100.0 / progress)


def fold(
    operation: Operation, before: Execution | None, after: Execution, now: datetime
) -> Operation:
    """Fold one execution change (``before`` → ``after``) into its operation.

    ``before`` is ``None`` when the execution is new. The result carries the new
    counts, progress sum, derived state, timestamps and a version one higher; its
    ``error`` is left to :func:`error_summary`, which needs the other failures too.
    """
    counts = dict(operation.counts)
    progress_sum = operation.progress_sum + contribution(after)
    total = operation.total
    if before is None:
        total += 1
    else:
        counts[before.state] -= 1
        progress_sum -= contribution(before)
    counts[after.state] = counts.get(after.state, 0) + 1
    state = operation_state(counts)
    started_at = operation.started_at
    if started_at is None and after.state not in (State.SCHEDULED, State.QUEUED):
        started_at = now
    result = after.result if total == 1 else operation.result
    reported_eta = None if state.terminal else (after.eta or operation.eta)
    return evolve(
        operation,
        counts=counts,
        progress_sum=max(0.0, progress_sum),
        total=total,
        state=state,
        started_at=started_at,
        completed_at=(operation.completed_at or now) if state.terminal else None,
        eta=reported_eta,
        result=result,
        updated_at=now,
        version=operation.version + 1,
    )
