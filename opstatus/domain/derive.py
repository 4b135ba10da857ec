"""What an operation is, derived from what its executions are."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from opstatus.domain.records import Execution, Operation, evolve
from opstatus.domain.states import OperationState, State


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
    counts, progress sum, derived state, timestamps and a version one higher.
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
    error = operation.error
    if after.state in (State.FAILED, State.TIMED_OUT) and after.error:
        error = f"{after.target}: {after.error}"
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
        error=error,
        result=result,
        updated_at=now,
        version=operation.version + 1,
    )
