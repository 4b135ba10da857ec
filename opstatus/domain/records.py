"""Frozen records. A change makes a new record with :func:`evolve`; nothing mutates."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

from opstatus.domain.roles import Role
from opstatus.domain.states import OperationState, State

JSON = Any
_R = TypeVar("_R")


#: a record class -> its field names, when :func:`evolve` may copy it slot by slot
_SLOTTED: dict[type, frozenset[str] | None] = {}
_SET = object.__setattr__


def evolve(record: _R, **changes: Any) -> _R:
    """Return a copy of ``record`` with ``changes`` applied, as ``dataclasses.replace``
    does. A slotted record without ``__post_init__`` (every one here) is copied slot by
    slot: replace walks the fields and calls the keyword ``__init__`` (5.8 µs against
    3.6 µs for an execution, timeit), several times per report (P2 profile,
    docs/benchmarks.md)."""
    cls = type(record)
    if cls not in _SLOTTED:
        slotted = "__slots__" in cls.__dict__ and not hasattr(cls, "__post_init__")
        fields = dataclasses.fields(cls)  # type: ignore[arg-type]
        _SLOTTED[cls] = frozenset(f.name for f in fields) if slotted else None
    names = _SLOTTED[cls]
    if names is None or not names.issuperset(changes):
        return dataclasses.replace(record, **changes)  # type: ignore[type-var]
    copy = object.__new__(cls)
    for name in names:
        _SET(copy, name, changes[name] if name in changes else getattr(record, name))
    return copy


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Tenant:
    """An organization; every other row belongs to exactly one."""

    id: str
    name: str
    created_at: datetime


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Target:
    """A thing that executes work: node, device, machine."""

    tenant: str
    id: str
    name: str
    labels: Mapping[str, str]
    created_at: datetime


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Group:
    """A named set of targets."""

    tenant: str
    id: str
    name: str
    targets: Sequence[str]
    created_at: datetime


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Timeouts:
    """Deadlines in seconds; ``None`` means no deadline."""

    queue: float | None = None  #: longest wait in the inbox before ``timed_out``
    lease: float = 60.0  #: how long a dispatched execution stays with its target unacknowledged
    run: float | None = None  #: longest time in progress before ``timed_out``
    #: longest silence of the agent on started work (acknowledged, in progress): every
    #: report renews it; when it passes the work is queued again, or timed out
    heartbeat: float | None = None


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Rollout:
    """How fast an operation spreads and when it gives up; ``None``: no limit."""

    max_per_minute: int | None = None  #: most executions dispatched in any 60 s
    abort_after_failures: int | None = None  #: cancel what is still queued after this many


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Operation:
    """One triggered piece of work aimed at one or more targets."""

    id: str
    tenant: str
    number: int
    kind: str
    parameters: Mapping[str, JSON]
    internal: bool
    groups: Sequence[str]
    schedule_at: datetime | None
    timeouts: Timeouts
    retries: int
    exclusive: bool
    idempotency_key: str | None
    state: OperationState
    counts: Mapping[str, int]  #: executions per state (every state present)
    progress_sum: float  #: sum of execution progress, terminal ones counting 100
    total: int  #: number of executions
    eta: datetime | None  #: last ETA an agent reported while the operation runs
    error: str | None
    result: JSON
    created_at: datetime
    started_at: datetime | None
    updated_at: datetime
    completed_at: datetime | None
    version: int
    rollout: Rollout = Rollout()

    @property
    def progress(self) -> float:
        """Mean execution progress, 0-100."""
        return 0.0 if self.total == 0 else round(self.progress_sum / self.total, 2)


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Execution:
    """One target's part of an operation."""

    id: str
    tenant: str
    operation_id: str
    target: str
    state: State
    progress: float
    eta: datetime | None
    details: Mapping[str, JSON]
    error: str | None
    result: JSON
    attempt: int
    version: int
    queued_at: datetime | None
    started_at: datetime | None
    updated_at: datetime
    finished_at: datetime | None
    lease_expires_at: datetime | None
    due_at: datetime | None = None  #: next deadline (see ``deadlines.due``)


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Event:
    """One recorded change; ``seq`` grows per tenant in commit order."""

    seq: int
    tenant: str
    type: str
    operation_id: str
    execution_id: str | None
    target: str | None
    state: str
    progress: float
    data: Mapping[str, JSON]
    created_at: datetime


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class ExecutionUpdate:
    """What an agent or client asks to change on one execution (all optional)."""

    state: State | None = None
    progress: float | None = None
    eta: datetime | None = None
    details: Mapping[str, JSON] | None = None
    error: str | None = None
    result: JSON = None
    reason: str | None = None
    expected_version: int | None = None
    #: the target learnt of the work another way (a device told out of band, or
    #: re-flashed): a report on scheduled or queued work takes the inbox's steps first
    deliver: bool = False
    #: the report may take a step the table reserves for a forced cancel
    force: bool = False


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class OperationQuery:
    """Filters and paging for operation lists (docs/architecture.md, Canonical shapes)."""

    ids: Sequence[str] = ()
    targets: Sequence[str] = ()
    groups: Sequence[str] = ()  #: aimed at any of these groups
    states: Sequence[OperationState] = ()
    kinds: Sequence[str] = ()
    internal: bool | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    limit: int = 50
    offset: int = 0
    before_number: int | None = None  #: keyset cursor: only numbers below this


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class ExecutionQuery:
    """Filters and paging for execution lists across operations (newest first)."""

    operation_ids: Sequence[str] = ()
    targets: Sequence[str] = ()
    states: Sequence[State] = ()
    internal: bool | None = None  #: False: only executions of non-internal operations
    limit: int = 50
    offset: int = 0


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Page:
    """One page of a list; ``next_cursor`` is ``None`` on the last page."""

    items: Sequence[Any]
    next_cursor: str | None


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class ApiKey:
    """A credential of one tenant; only a hash of its secret is ever stored."""

    id: str
    tenant: str
    name: str
    role: Role
    targets: Sequence[str]  #: for agent keys: the only targets it reaches
    created_at: datetime
    revoked_at: datetime | None = None
