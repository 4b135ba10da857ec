"""Every way an execution changes, each asking the transition table first."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from opstatus.domain import derive, errors, states
from opstatus.domain.records import Event, Execution, ExecutionUpdate, Operation, evolve
from opstatus.domain.states import State


def _step(
    execution: Execution,
    new: State,
    now: datetime,
    *,
    retry: bool = False,
    force: bool = False,
    **fields: Any,
) -> Execution:
    states.check(execution.state, new, retry=retry, force=force)
    if new.terminal:
        fields.setdefault("finished_at", now)
        fields.setdefault("lease_expires_at", None)
        if new is State.SUCCEEDED:
            fields["progress"] = 100.0
    if new in (State.ACKNOWLEDGED, State.IN_PROGRESS) and execution.started_at is None:
        fields.setdefault("started_at", now)
    if new is not State.DISPATCHED and not new.terminal:
        fields.setdefault("lease_expires_at", None)
    return evolve(execution, state=new, updated_at=now, version=execution.version + 1, **fields)


def _check_progress(value: float) -> float:
    if not 0.0 <= value <= 100.0:
        raise errors.Invalid(f"progress must be between 0 and 100, got {value}")
    return float(value)


def _reported_fields(execution: Execution, update: ExecutionUpdate) -> dict[str, Any]:
    """The fields a report sets besides ``state`` (details merge into the current ones)."""
    fields: dict[str, Any] = {}
    if update.progress is not None:
        fields["progress"] = _check_progress(update.progress)
    if update.details is not None:
        fields["details"] = {**execution.details, **update.details}
    given = {"eta": update.eta, "error": update.error, "result": update.result}
    fields.update({name: value for name, value in given.items() if value is not None})
    return fields


def apply_update(execution: Execution, update: ExecutionUpdate, now: datetime) -> Execution:
    """Apply an agent's or client's report; the table decides any state change.

    An update without ``state`` changes fields only, and only while a target
    holds the execution. ``update.deliver`` first takes the inbox's steps
    (:func:`delivered`); ``update.force`` allows the forced-cancel step. Raises
    VersionMismatch (carrying the current record), Conflict (carrying the current state) or Invalid.
    """
    if update.expected_version is not None and update.expected_version != execution.version:
        raise errors.VersionMismatch(
            f"expected version {update.expected_version}, current is {execution.version}",
            current=execution,
            state=str(execution.state),
        )
    if update.deliver and update.state is not None:
        execution = delivered(execution, update.state, now)
    fields = _reported_fields(execution, update)
    if update.state is None:
        if not fields:
            return execution
        if not execution.state.active:
            raise errors.Conflict(
                f"execution is {execution.state}; only a state change is possible",
                state=str(execution.state),
            )
        return evolve(execution, updated_at=now, version=execution.version + 1, **fields)
    if update.state is State.DISPATCHED:
        # Only the inbox dispatches: it is what grants the lease.
        states.check(execution.state, State.DISPATCHED)
        raise errors.Invalid("state dispatched is set by reading the inbox", parameter="state")
    if update.state is State.QUEUED and execution.state is State.DISPATCHED:
        return release(execution, now)
    if update.state is State.QUEUED and execution.state is State.SCHEDULED:
        return promote(execution, now)
    return _step(execution, update.state, now, force=update.force, **fields)


def delivered(execution: Execution, new: State, now: datetime) -> Execution:
    """``execution`` as the inbox would have left it for its target to report ``new``:
    promoted and dispatched (with a lease that has already run out, as the report
    that follows ends or replaces it) when ``new`` cannot follow where it waits.

    Steps that ``new`` would not then allow are not taken, so a refused report is
    refused with the execution's real state.
    """
    waiting = (State.SCHEDULED, State.QUEUED, State.DISPATCHED)
    if execution.state not in waiting or states.allowed(execution.state, new):
        return execution
    later = waiting[waiting.index(execution.state) + 1 :]
    if not any(states.allowed(step, new) for step in later):
        return execution
    if execution.state is State.SCHEDULED:
        execution = promote(execution, now)
    if execution.state is State.QUEUED and not states.allowed(State.QUEUED, new):
        execution = dispatch(execution, now, 0.0)
    return execution


def dispatch(execution: Execution, now: datetime, lease: float) -> Execution:
    """Hand a queued execution to its target with a lease of ``lease`` seconds."""
    return _step(
        execution,
        State.DISPATCHED,
        now,
        lease_expires_at=now + timedelta(seconds=lease),
        started_at=execution.started_at or now,
    )


def release(execution: Execution, now: datetime) -> Execution:
    """The lease ran out (or the agent gave the work back): queue again, attempt + 1.

    ``started_at`` is cleared, as on a retry: the next dispatch starts the new
    attempt, and its run timeout counts from there.
    """
    if execution.state is not State.DISPATCHED:
        raise errors.Conflict(
            f"execution is {execution.state}; only dispatched work is released",
            state=str(execution.state),
        )
    return _step(
        execution, State.QUEUED, now, attempt=execution.attempt + 1, queued_at=now, started_at=None
    )


def promote(execution: Execution, now: datetime) -> Execution:
    """A scheduled execution's time has come."""
    if execution.state is not State.SCHEDULED:
        raise errors.Conflict(
            f"execution is {execution.state}; only scheduled work is promoted",
            state=str(execution.state),
        )
    return _step(execution, State.QUEUED, now, queued_at=now)


def retry(execution: Execution, now: datetime) -> Execution:
    """Queue a failed or timed-out execution again, attempt + 1 (``started_at`` cleared:
    the next dispatch starts the new attempt, and its run timeout counts from there)."""
    if (
        not execution.state.terminal
        or states.TRANSITIONS.get((execution.state, State.QUEUED)) is not states.Via.RETRY
    ):
        raise errors.Conflict(
            f"execution is {execution.state}; only failed or timed-out work is retried",
            state=str(execution.state),
        )
    return _step(
        execution,
        State.QUEUED,
        now,
        retry=True,
        attempt=execution.attempt + 1,
        queued_at=now,
        progress=0.0,
        error=None,
        finished_at=None,
        started_at=None,
        eta=None,
    )


def give_back(execution: Execution, now: datetime) -> Execution:
    """Started work whose agent went silent: queue it again, attempt + 1, as a lost
    lease is (``started_at`` and progress cleared: the next attempt starts afresh)."""
    return _step(
        execution, State.QUEUED, now, retry=True, attempt=execution.attempt + 1,
        queued_at=now, started_at=None, progress=0.0, eta=None,
    )  # fmt: skip


#: the states of work a target holds, which its agent may give back
HELD = (State.DISPATCHED, State.ACKNOWLEDGED, State.IN_PROGRESS)


def hand_back(execution: Execution, now: datetime) -> Execution:
    """Work its agent gives back unfinished (it is stopping): queued again for any agent,
    the attempt not spent (``started_at`` and progress cleared, as for a lost lease)."""
    if execution.state not in HELD:
        raise errors.Conflict(
            f"execution is {execution.state}; only work a target holds can be released",
            state=str(execution.state),
        )
    return _step(
        execution, State.QUEUED, now, retry=True, queued_at=now, started_at=None,
        progress=0.0, eta=None,
    )  # fmt: skip


def time_out(execution: Execution, now: datetime, reason: str) -> Execution:
    """A deadline passed."""
    return _step(execution, State.TIMED_OUT, now, error=reason)


def cancel(execution: Execution, now: datetime, *, force: bool) -> Execution | None:
    """Cancel unless finished (``None``); running work needs ``force``."""
    if not states.allowed(execution.state, State.CANCELLED, force=force):
        return None
    return _step(execution, State.CANCELLED, now, force=force)


def execution_event(
    before: Execution | None, after: Execution, now: datetime, **data: Any
) -> Event:
    """The event row (``seq`` 0 until the store numbers it) for one execution change."""
    payload: dict[str, Any] = {"version": after.version, "attempt": after.attempt}
    if before is not None and before.state is not after.state:
        payload["from"] = str(before.state)
    if after.error is not None and after.state.terminal:
        payload["error"] = after.error
    payload.update({k: v for k, v in data.items() if v is not None})
    return Event(
        seq=0,
        tenant=after.tenant,
        type=f"execution.{after.state}",
        operation_id=after.operation_id,
        execution_id=after.id,
        target=after.target,
        state=str(after.state),
        progress=after.progress,
        data=payload,
        created_at=now,
    )


def operation_event(
    operation: Operation, now: datetime, type_: str | None = None, **data: Any
) -> Event:
    """The event row for an operation-level change (default type: its new state)."""
    payload: Mapping[str, Any] = {
        "version": operation.version,
        "counts": dict(operation.counts),
        **{k: v for k, v in data.items() if v is not None},
    }
    return Event(
        seq=0,
        tenant=operation.tenant,
        type=type_ or f"operation.{operation.state}",
        operation_id=operation.id,
        execution_id=None,
        target=None,
        state=str(operation.state),
        progress=operation.progress,
        data=payload,
        created_at=now,
    )


def settle(
    operation: Operation,
    changes: Sequence[tuple[Execution | None, Execution]],
    now: datetime,
    *,
    failures: Sequence[Execution] | None = None,
    **event_data: Any,
) -> tuple[Operation, list[Event]]:
    """Fold execution changes into their operation and list the events they make.

    ``failures`` are the operation's failed or timed-out executions before the
    changes (see :func:`derive.failing`); the caller passes them when
    :func:`derive.touches_failures`, and the operation's ``error`` is summarised anew.
    Every change yields an ``execution.<state>`` event; a change of the derived
    operation state adds an ``operation.<state>`` event after them.
    """
    events: list[Event] = []
    folded = operation
    for before, after in changes:
        folded = derive.fold(folded, before, after, now)
        events.append(execution_event(before, after, now, **event_data))
    if failures is not None:
        now_failing = derive.failing(failures, changes)
        folded = evolve(folded, error=derive.error_summary(folded, now_failing))
    if folded.state is not operation.state:
        events.append(operation_event(folded, now))
    return folded, events
