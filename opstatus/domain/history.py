"""An operation as it was at a past moment, rebuilt from its event log.

Every change of an execution wrote one ``execution.<state>`` event (state, progress,
version, attempt) in the transaction that made it, and the creation wrote
``operation.created`` with the counts the executions started with. Replaying the
events up to a moment gives each execution's state then; the operation's aggregates
are derived from those exactly as they were at the time (``derive.summarize``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from opstatus.domain import derive, errors, watch
from opstatus.domain.records import Event, Execution, Operation, evolve
from opstatus.domain.states import State

CREATED = "operation.created"


def rebuild(
    operation: Operation, executions: Sequence[Execution], events: Sequence[Event], moment: datetime
) -> tuple[Operation, list[Execution]]:
    """``operation`` and its ``executions`` (as they are now) as they were at ``moment``.

    ``events`` are the operation's events in seq order (those after ``moment`` are
    ignored). Invalid when ``moment`` is before the creation, or when the log no longer
    reaches back to the creation (events are purged after the retention period).
    """
    if moment < operation.created_at:
        raise errors.Invalid(
            f"as_of is before the operation was created ({operation.created_at.isoformat()})",
            parameter="as_of",
        )
    created = next((e for e in events if e.type == CREATED), None)
    if created is None:
        raise errors.Invalid(
            "the event log of this operation no longer reaches back to its creation",
            parameter="as_of",
        )
    initial = _initial_state(created)
    latest: dict[str, Event] = {}
    changes = 0
    started_at: datetime | None = None
    last = created.created_at
    for event in events:
        if event.created_at > moment or event.execution_id is None or event.type == watch.STALLED:
            continue
        latest[event.execution_id] = event
        changes += 1
        last = max(last, event.created_at)
        if started_at is None and State(event.state) not in (State.SCHEDULED, State.QUEUED):
            started_at = event.created_at
    then = [_execution_then(e, latest.get(e.id), initial, operation) for e in executions]
    summary = derive.summarize(operation, then)
    version = int(created.data.get("version", operation.version)) + changes
    return (
        evolve(
            summary,
            version=version,
            updated_at=last,
            started_at=started_at,
            completed_at=last if summary.state.terminal else None,
            eta=None,
            error=_error(summary, then),
            result=operation.result if summary.state.terminal else None,
        ),
        then,
    )


def _initial_state(created: Event) -> State:
    counts: dict[str, Any] = dict(created.data.get("counts") or {})
    for state in (State.SCHEDULED, State.QUEUED):
        if counts.get(state):
            return state
    return State.QUEUED


def _execution_then(
    execution: Execution, event: Event | None, initial: State, operation: Operation
) -> Execution:
    if event is None:  # unchanged since the creation
        return evolve(
            execution, state=initial, progress=0.0, version=1, attempt=1, error=None,
            result=None, eta=None, details={}, started_at=None, finished_at=None,
            lease_expires_at=None, updated_at=operation.created_at,
            queued_at=operation.created_at if initial is State.QUEUED else None,
        )  # fmt: skip
    state = State(event.state)
    same = state is execution.state and event.data.get("version") == execution.version
    return evolve(
        execution,
        state=state,
        progress=event.progress,
        version=int(event.data.get("version", execution.version)),
        attempt=int(event.data.get("attempt", execution.attempt)),
        error=event.data.get("error") if state.terminal else None,
        result=execution.result if same else None,
        details=execution.details if same else {},
        finished_at=event.created_at if state.terminal else None,
        updated_at=event.created_at,
    )


def _error(operation: Operation, executions: Sequence[Execution]) -> str | None:
    """The ``error`` summary as it read then (the same wording as a live operation's)."""
    failures = [e for e in executions if e.state in derive.FAILURES]
    return derive.error_summary(operation, sorted(failures, key=lambda e: (e.target, e.id)))
