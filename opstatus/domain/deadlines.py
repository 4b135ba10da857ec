"""When an execution's next deadline falls, and what happens when it passes.

Each execution carries at most one deadline (``due_at``), fixed by its state:
a schedule, a queue timeout, a lease, a run timeout or a retry's backoff. The
engine sweeps executions whose deadline passed and asks :func:`on_deadline`.

An execution gets at most ``1 + retries`` attempts, however the previous one
ended: failed, timed out, or its lease lost with the agent.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from opstatus.domain import changes
from opstatus.domain.records import Execution, Operation
from opstatus.domain.states import State

BACKOFF_BASE = 1.0  #: seconds before the first retry
BACKOFF_CAP = 300.0  #: longest wait between retries


def backoff(attempt: int) -> float:
    """Seconds to wait after attempt ``attempt`` failed: 1, 2, 4, … capped."""
    return float(min(BACKOFF_CAP, BACKOFF_BASE * 2 ** max(0, attempt - 1)))


def attempts_left(execution: Execution, operation: Operation) -> bool:
    """Whether another attempt is allowed after this one."""
    return execution.attempt <= operation.retries


def due(execution: Execution, operation: Operation) -> datetime | None:
    """The execution's next deadline in its current state, if it has one."""
    t = operation.timeouts
    state = execution.state
    if state is State.SCHEDULED:
        return operation.schedule_at
    if state is State.QUEUED and t.queue is not None and execution.queued_at is not None:
        return execution.queued_at + timedelta(seconds=t.queue)
    if state is State.DISPATCHED:
        return execution.lease_expires_at
    if state in (State.ACKNOWLEDGED, State.IN_PROGRESS) and t.run is not None:
        started = execution.started_at or execution.updated_at
        return started + timedelta(seconds=t.run)
    if state in (State.FAILED, State.TIMED_OUT) and attempts_left(execution, operation):
        finished = execution.finished_at or execution.updated_at
        return finished + timedelta(seconds=backoff(execution.attempt))
    return None


def on_deadline(execution: Execution, operation: Operation, now: datetime) -> Execution:
    """What the passing of the execution's deadline does to it."""
    state, t = execution.state, operation.timeouts
    if state is State.SCHEDULED:
        return changes.promote(execution, now)
    if state is State.QUEUED:
        return changes.time_out(execution, now, f"not picked up within {t.queue or 0:g} s")
    if state is State.DISPATCHED:
        if attempts_left(execution, operation):
            return changes.release(execution, now)
        return changes.time_out(
            execution, now, f"lease of {t.lease:g} s expired on attempt {execution.attempt}"
        )
    if state in (State.ACKNOWLEDGED, State.IN_PROGRESS):
        return changes.time_out(execution, now, f"still running after {t.run or 0:g} s")
    return changes.retry(execution, now)
