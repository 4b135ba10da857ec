"""When an execution's next deadline falls, and what happens when it passes.

Each execution carries at most one deadline (``due_at``), fixed by its state:
a schedule, a queue timeout, a lease, a run timeout or heartbeat (whichever comes
first) or a retry's backoff. The engine sweeps executions whose deadline passed
and asks :func:`on_deadline`.

Started work (acknowledged, in progress) holds a heartbeat lease: it expires
``timeouts.heartbeat`` seconds after the agent's last report, and every report
renews it (``lease_expires_at`` shows it, as it shows a dispatch's lease).

An execution gets at most ``1 + retries`` attempts, however the previous one
ended: failed, timed out, or its lease lost with the agent.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from opstatus.domain import changes
from opstatus.domain.records import Execution, Operation, evolve
from opstatus.domain.states import State

STARTED = (State.ACKNOWLEDGED, State.IN_PROGRESS)

BACKOFF_BASE = 1.0  #: seconds before the first retry
BACKOFF_CAP = 300.0  #: longest wait between retries


def backoff(attempt: int) -> float:
    """Seconds to wait after attempt ``attempt`` failed: 1, 2, 4, … capped."""
    return float(min(BACKOFF_CAP, BACKOFF_BASE * 2 ** max(0, attempt - 1)))


def attempts_left(execution: Execution, operation: Operation) -> bool:
    """Whether another attempt is allowed after this one."""
    return execution.attempt <= operation.retries


def heartbeat_at(execution: Execution, operation: Operation) -> datetime | None:
    """When started work's heartbeat lease runs out: its last report plus the heartbeat."""
    beat = operation.timeouts.heartbeat
    if execution.state not in STARTED or beat is None:
        return None
    return execution.updated_at + timedelta(seconds=beat)


def run_deadline(execution: Execution, operation: Operation) -> datetime | None:
    """When started work has run too long (``timeouts.run`` after its start)."""
    run = operation.timeouts.run
    if execution.state not in STARTED or run is None:
        return None
    return (execution.started_at or execution.updated_at) + timedelta(seconds=run)


def timed(execution: Execution, operation: Operation) -> Execution:
    """The execution with its deadlines as stored: ``due_at``, and for started work the
    heartbeat lease in ``lease_expires_at``."""
    if execution.state in STARTED:
        execution = evolve(execution, lease_expires_at=heartbeat_at(execution, operation))
    return evolve(execution, due_at=due(execution, operation))


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
    if state in STARTED:
        ends = (run_deadline(execution, operation), heartbeat_at(execution, operation))
        return min((end for end in ends if end is not None), default=None)
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
    if state in STARTED:
        return _on_started(execution, operation, now)
    return changes.retry(execution, now)


def _on_started(execution: Execution, operation: Operation, now: datetime) -> Execution:
    """Run timeout first; else the heartbeat passed: queued again while attempts remain."""
    t = operation.timeouts
    ran_out = run_deadline(execution, operation)
    if ran_out is not None and ran_out <= now:
        return changes.time_out(execution, now, f"still running after {t.run or 0:g} s")
    if attempts_left(execution, operation):
        return changes.give_back(execution, now)
    return changes.time_out(
        execution, now,
        f"the agent went silent: no report for {t.heartbeat or 0:g} s "
        f"on attempt {execution.attempt}",
    )  # fmt: skip
