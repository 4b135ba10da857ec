"""What answers "is it stuck?": time spent in a state, and the stall rule.

Pure functions over records; the store observes transitions through
:func:`state_seconds` and the engine applies :class:`StallRule`.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

from opstatus.domain import changes
from opstatus.domain.records import Event, Execution, evolve
from opstatus.domain.states import State

#: the event the engine writes, once per attempt, for work that runs far too long
STALLED = "execution.stalled"


def entered_at(execution: Execution) -> datetime | None:
    """When ``execution`` entered its current state, as far as its record tells.

    Scheduled and queued executions change only by leaving the state, so their
    ``updated_at`` (or ``queued_at``) is the entry time. ``started_at`` is set by the
    dispatch and kept until the attempt ends, and the record keeps no later mark: for
    acknowledged and in_progress the answer is the dispatch, so their time counts the
    whole attempt held by the target.
    """
    state = execution.state
    if state is State.SCHEDULED:
        return execution.updated_at
    if state is State.QUEUED:
        return execution.queued_at or execution.updated_at
    if state.active:
        return execution.started_at
    return execution.finished_at


def state_seconds(before: Execution, now: datetime) -> float | None:
    """Seconds ``before`` spent in its state until a change at ``now`` (None: unknown)."""
    since = entered_at(before)
    if since is None:
        return None
    return max(0.0, (now - since).total_seconds())


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class StallRule:
    """Work held by a target is stalled when it has run ``factor`` times longer than its
    kind usually takes (the median of the kind's recent finished operations), and at
    least ``floor`` seconds; a kind without history is stalled after ``without_history``.
    """

    factor: float = 3.0
    floor: float = 60.0
    without_history: float = 3600.0

    def threshold(self, usual: float | None) -> float:
        """Seconds of running after which work of a kind that usually takes ``usual``
        seconds is stalled."""
        if usual is None:
            return max(self.floor, self.without_history)
        return max(self.floor, self.factor * usual)


def stalled_event(
    execution: Execution, now: datetime, *, running: float, usual: float | None
) -> Event:
    """The ``execution.stalled`` event (``seq`` 0 until the store numbers it).

    It changes nothing about the execution (no version bump): it tells event readers
    and webhooks that work still held by a target runs far longer than usual.
    """
    event = changes.execution_event(
        None,
        execution,
        now,
        running_seconds=round(running, 3),
        usual_seconds=None if usual is None else round(usual, 3),
    )
    return evolve(event, type=STALLED)
