"""Rows to records and records to parameter lists, shared by both SQL adapters."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from opstatus.domain.records import (
    ApiKey,
    Event,
    Execution,
    Operation,
    Rollout,
    Target,
    Tenant,
    Timeouts,
)
from opstatus.domain.roles import Role
from opstatus.domain.states import OperationState, State
from opstatus.domain.webhooks import Delivery, DeliveryStatus, Webhook
from opstatus.store.driver import Codec, Row

EXECUTION_COLUMNS = (
    "id", "tenant_id", "operation_id", "target_id", "state", "progress", "eta", "details",
    "error", "result", "attempt", "version", "queued_at", "started_at", "updated_at",
    "finished_at", "lease_expires_at", "due_at",
)  # fmt: skip


def _req(value: Any) -> Any:
    assert value is not None
    return value


def tenant(row: Row, c: Codec) -> Tenant:
    """A tenants row."""
    return Tenant(id=row["id"], name=row["name"], created_at=_req(c.dt(row["created_at"])))


def target(row: Row, c: Codec) -> Target:
    """A targets row."""
    return Target(
        tenant=row["tenant_id"],
        id=row["id"],
        name=row["name"],
        labels=c.unjs(row["labels"]),
        created_at=_req(c.dt(row["created_at"])),
    )


def operation(row: Row, c: Codec) -> Operation:
    """An operations row."""
    return Operation(
        id=row["id"],
        tenant=row["tenant_id"],
        number=row["number"] or 0,
        kind=row["kind"],
        parameters=c.unjs(row["parameters"]),
        internal=bool(row["internal"]),
        groups=c.unjs(row["groups"]),
        schedule_at=c.dt(row["schedule_at"]),
        timeouts=Timeouts(
            queue=row["timeout_queue"],
            lease=row["timeout_lease"],
            run=row["timeout_run"],
            heartbeat=row["timeout_heartbeat"],
        ),
        retries=row["retries"],
        exclusive=bool(row["exclusive"]),
        idempotency_key=row["idempotency_key"],
        state=OperationState(row["state"]),
        counts=c.unjs(row["counts"]),
        progress_sum=row["progress_sum"],
        total=row["total"],
        eta=c.dt(row["eta"]),
        error=row["error"],
        result=c.unjs(row["result"]),
        created_at=_req(c.dt(row["created_at"])),
        started_at=c.dt(row["started_at"]),
        updated_at=_req(c.dt(row["updated_at"])),
        completed_at=c.dt(row["completed_at"]),
        version=row["version"],
        rollout=Rollout(
            max_per_minute=row["max_per_minute"],
            abort_after_failures=row["abort_after_failures"],
        ),
    )


def operation_insert_args(op: Operation, request_hash: str | None, c: Codec) -> list[Any]:
    """Parameters of ``op_insert``."""
    return [
        op.id, op.tenant, op.kind, c.js(op.parameters), c.flag(op.internal),
        c.js(list(op.groups)), c.ts(op.schedule_at), op.timeouts.queue, op.timeouts.lease,
        op.timeouts.run, op.retries, c.flag(op.exclusive), op.idempotency_key, request_hash,
        str(op.state), c.js(dict(op.counts)), op.progress_sum, op.total, c.ts(op.eta),
        op.error, c.js(op.result), c.ts(op.created_at), c.ts(op.started_at),
        c.ts(op.updated_at), c.ts(op.completed_at), op.version, op.rollout.max_per_minute,
        op.rollout.abort_after_failures, op.timeouts.heartbeat,
    ]  # fmt: skip


def operation_update_args(op: Operation, c: Codec) -> list[Any]:
    """Parameters of ``op_update``."""
    return [
        op.tenant, op.id, str(op.state), c.js(dict(op.counts)), op.progress_sum, op.total,
        c.ts(op.eta), op.error, c.js(op.result), c.ts(op.started_at), c.ts(op.updated_at),
        c.ts(op.completed_at), op.version,
    ]  # fmt: skip


def execution(row: Row, c: Codec) -> Execution:
    """An executions row."""
    return Execution(
        id=row["id"],
        tenant=row["tenant_id"],
        operation_id=row["operation_id"],
        target=row["target_id"],
        state=State(row["state"]),
        progress=row["progress"],
        eta=c.dt(row["eta"]),
        details=c.unjs(row["details"]),
        error=row["error"],
        result=c.unjs(row["result"]),
        attempt=row["attempt"],
        version=row["version"],
        queued_at=c.dt(row["queued_at"]),
        started_at=c.dt(row["started_at"]),
        updated_at=_req(c.dt(row["updated_at"])),
        finished_at=c.dt(row["finished_at"]),
        lease_expires_at=c.dt(row["lease_expires_at"]),
        due_at=c.dt(row["due_at"]),
    )


def execution_insert_args(e: Execution, c: Codec, due_at: datetime | None) -> list[Any]:
    """Parameters of ``exec_insert`` (in ``EXECUTION_COLUMNS`` order), with its deadline."""
    return [
        e.id, e.tenant, e.operation_id, e.target, str(e.state), e.progress, c.ts(e.eta),
        c.js(dict(e.details)), e.error, c.js(e.result), e.attempt, e.version,
        c.ts(e.queued_at), c.ts(e.started_at), c.ts(e.updated_at), c.ts(e.finished_at),
        c.ts(e.lease_expires_at), c.ts(due_at),
    ]  # fmt: skip


def execution_update_args(e: Execution, c: Codec) -> list[Any]:
    """Parameters of ``exec_update``."""
    return [
        e.tenant, e.id, str(e.state), e.progress, c.ts(e.eta), c.js(dict(e.details)),
        e.error, c.js(e.result), e.attempt, e.version, c.ts(e.queued_at),
        c.ts(e.started_at), c.ts(e.updated_at), c.ts(e.finished_at),
        c.ts(e.lease_expires_at), c.ts(e.due_at),
    ]  # fmt: skip


def event(row: Row, c: Codec) -> Event:
    """An events row."""
    return Event(
        seq=row["seq"],
        tenant=row["tenant_id"],
        type=row["type"],
        operation_id=row["operation_id"],
        execution_id=row["execution_id"],
        target=row["target_id"],
        state=row["state"],
        progress=row["progress"],
        data=c.unjs(row["data"]),
        created_at=_req(c.dt(row["created_at"])),
    )


def event_insert_args(ev: Event, c: Codec) -> list[Any]:
    """Parameters of ``event_insert``."""
    return [
        ev.tenant, ev.seq, ev.type, ev.operation_id, ev.execution_id, ev.target, ev.state,
        ev.progress, c.js(dict(ev.data)), c.ts(ev.created_at),
    ]  # fmt: skip


def api_key(row: Row, c: Codec) -> ApiKey:
    """An api_keys row."""
    return ApiKey(
        id=row["id"],
        tenant=row["tenant_id"],
        name=row["name"],
        role=Role(row["role"]),
        targets=c.unjs(row["targets"]),
        created_at=_req(c.dt(row["created_at"])),
        revoked_at=c.dt(row["revoked_at"]),
    )


def webhook(row: Row, c: Codec) -> Webhook:
    """A webhooks row."""
    return Webhook(
        id=row["id"],
        tenant=row["tenant_id"],
        url=row["url"],
        events=c.unjs(row["events"]),
        secret=row["secret"],
        created_at=_req(c.dt(row["created_at"])),
        cursor=int(row["cursor_seq"]),
        attempts=int(row["attempts"]),
        next_attempt_at=c.dt(row["next_attempt_at"]),
    )


def delivery(row: Row, c: Codec) -> Delivery:
    """A webhook_deliveries row."""
    return Delivery(
        webhook_id=row["webhook_id"],
        number=int(row["number"]),
        tenant=row["tenant_id"],
        seq=int(row["seq"]),
        type=row["type"],
        attempt=int(row["attempt"]),
        status=DeliveryStatus(row["status"]),
        status_code=row["status_code"],
        error=row["error"],
        replay_of=None if row["replay_of"] is None else int(row["replay_of"]),
        next_attempt_at=c.dt(row["next_attempt_at"]),
        created_at=_req(c.dt(row["created_at"])),
        delivered_at=c.dt(row["delivered_at"]),
    )
