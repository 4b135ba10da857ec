"""Rows to records and records to parameter lists, shared by both SQL adapters."""

from __future__ import annotations

import dataclasses
import enum
import typing
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

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
from opstatus.domain.states import OperationState
from opstatus.domain.webhooks import Delivery, Webhook
from opstatus.store.driver import Codec, Row

EXECUTION_COLUMNS = (
    "id", "tenant_id", "operation_id", "target_id", "state", "progress", "eta", "details",
    "error", "result", "attempt", "version", "queued_at", "started_at", "updated_at",
    "finished_at", "lease_expires_at", "due_at",
)  # fmt: skip


def _req(value: Any) -> Any:
    assert value is not None
    return value


R = TypeVar("R")
#: turns one column value into a field value, with the adapter's codec
Convert = Callable[[Codec, Any], Any]
#: the column of a field where it is not the field's own name
_COLUMNS = {"tenant": "tenant_id", "target": "target_id"}
_BY_TYPE: dict[Any, Convert] = {
    datetime: lambda c, v: _req(c.dt(v)),
    datetime | None: lambda c, v: c.dt(v),
    int: lambda c, v: int(v),
    int | None: lambda c, v: None if v is None else int(v),
    bool: lambda c, v: bool(v),
    Any: lambda c, v: c.unjs(v),
}


def _convert(hint: Any) -> Convert | None:
    """How a field of type ``hint`` is read (None: as the driver gives it)."""
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return lambda c, v: hint(v)
    if typing.get_origin(hint) in (Mapping, Sequence):
        return _BY_TYPE[Any]  # a JSON column
    return _BY_TYPE.get(hint)


def record(cls: type[R], **columns: str) -> Callable[[Row, Codec], R]:
    """The decoder of a row into the record ``cls``, field by field: each from its column
    (the field's name, ``tenant_id``/``target_id`` for ``tenant``/``target``, or as
    ``columns`` renames it), converted as its type says (timestamps, JSON, enums,
    integers, flags). The plan is made once here, not per row."""
    hints = typing.get_type_hints(cls)
    plan = [
        (f.name, columns.get(f.name, _COLUMNS.get(f.name, f.name)), _convert(hints[f.name]))
        for f in dataclasses.fields(cls)  # type: ignore[arg-type]
    ]
    plain = tuple((name, column) for name, column, how in plan if how is None)
    converted = tuple((name, column, how) for name, column, how in plan if how is not None)

    def decode(row: Row, c: Codec) -> R:
        values = {name: row[column] for name, column in plain}
        for name, column, how in converted:
            values[name] = how(c, row[column])
        return cls(**values)

    return decode


#: a tenants row
tenant = record(Tenant)
#: a targets row
target = record(Target)


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


def event_insert_args(ev: Event, c: Codec) -> list[Any]:
    """Parameters of ``event_insert``."""
    return [
        ev.tenant, ev.seq, ev.type, ev.operation_id, ev.execution_id, ev.target, ev.state,
        ev.progress, c.js(dict(ev.data)), c.ts(ev.created_at),
    ]  # fmt: skip


#: an executions row
execution = record(Execution)
#: an events row
event = record(Event)
#: an api_keys row
api_key = record(ApiKey)
#: a webhooks row
webhook = record(Webhook, cursor="cursor_seq")
#: a webhook_deliveries row
delivery = record(Delivery)
