"""Records and views of the service layer to the response Structs of wire.py."""

from __future__ import annotations

from datetime import datetime

import msgspec

from opstatus import wire
from opstatus.domain import deadlines, derive
from opstatus.domain.records import ApiKey, Event, Execution, Group, Target
from opstatus.service.operations import InboxItem, OperationView


def execution(e: Execution) -> wire.ExecutionOut:
    """An execution."""
    return wire.ExecutionOut(
        id=e.id, operation_id=e.operation_id, target=e.target, state=e.state,
        progress=e.progress, eta=e.eta, details=dict(e.details), error=e.error,
        result=e.result, attempt=e.attempt, version=e.version, queued_at=e.queued_at,
        started_at=e.started_at, updated_at=e.updated_at, finished_at=e.finished_at,
        heartbeat_expires_at=_heartbeat(e),
    )  # fmt: skip


def _heartbeat(e: Execution) -> datetime | None:
    """Started work's heartbeat deadline (stored as its lease, see domain.deadlines)."""
    return e.lease_expires_at if e.state in deadlines.STARTED else None


def inbox_item(item: InboxItem) -> wire.InboxItemOut:
    """An execution as its target receives it."""
    e = item.execution
    return wire.InboxItemOut(
        **msgspec.structs.asdict(execution(e)),
        kind=item.kind, parameters=item.parameters, lease_expires_at=e.lease_expires_at,
    )  # fmt: skip


def operation(view: OperationView, now: datetime) -> wire.OperationOut:
    """An operation (with executions when the view has them)."""
    op = view.operation
    return wire.OperationOut(
        id=op.id, number=op.number, tenant=op.tenant, kind=op.kind,
        parameters=dict(op.parameters), internal=op.internal, state=op.state,
        progress=op.progress, eta=derive.eta(op, now), error=op.error,
        outcome=derive.outcome(op.counts), result=op.result,
        counts=dict(op.counts), targets=list(view.targets), groups=list(op.groups),
        created_at=op.created_at, started_at=op.started_at, updated_at=op.updated_at,
        completed_at=op.completed_at, schedule_at=op.schedule_at,
        timeouts=wire.TimeoutsOut(
            queue=op.timeouts.queue, lease=op.timeouts.lease, run=op.timeouts.run,
            heartbeat=op.timeouts.heartbeat,
        ),
        retries=op.retries, exclusive=op.exclusive, version=op.version,
        rollout=wire.RolloutOut(
            max_per_minute=op.rollout.max_per_minute,
            abort_after_failures=op.rollout.abort_after_failures,
        ),
        executions=(
            msgspec.UNSET if view.executions is None
            else [execution(e) for e in view.executions]
        ),
        executions_truncated=True if view.truncated else msgspec.UNSET,
    )  # fmt: skip


def event(ev: Event) -> wire.EventOut:
    """An event."""
    return wire.EventOut(
        seq=ev.seq, type=ev.type, operation_id=ev.operation_id, execution_id=ev.execution_id,
        target=ev.target, state=ev.state, progress=ev.progress, data=dict(ev.data),
        created_at=ev.created_at,
    )  # fmt: skip


def target(t: Target) -> wire.TargetOut:
    """A target."""
    return wire.TargetOut(id=t.id, name=t.name, labels=dict(t.labels), created_at=t.created_at)


def group(g: Group) -> wire.GroupOut:
    """A group."""
    return wire.GroupOut(id=g.id, name=g.name, targets=list(g.targets), created_at=g.created_at)


def key(k: ApiKey) -> wire.KeyOut:
    """A key without its secret."""
    return wire.KeyOut(
        id=k.id, tenant=k.tenant, name=k.name, role=k.role, targets=list(k.targets),
        created_at=k.created_at, revoked_at=k.revoked_at,
    )  # fmt: skip


def created_key(k: ApiKey, secret: str) -> wire.KeyCreatedOut:
    """A new key with its secret, shown once."""
    return wire.KeyCreatedOut(
        id=k.id, tenant=k.tenant, name=k.name, role=k.role, targets=list(k.targets),
        created_at=k.created_at, revoked_at=k.revoked_at, secret=secret,
    )  # fmt: skip
