"""The IoT Command Status API (docs/dialects.md).

A *command request* is an operation; a *command status object* is one execution (one
device = one target). Credentials: ``X-API-Key`` (also ``Authorization: Bearer``).

- ``GET /commands/v0/status/`` — filters ``request`` (operation ids) and ``device`` (target
  ids), both comma-separated; ``state`` (an enum string; a comma-separated list of them
  also works); ``exclude_internal_commands`` (default false); ``limit`` (1-1000, default
  50) and ``offset``. Newest first.
- ``GET /commands/v0/status/{id}/`` — one status object.
- ``PUT /commands/v0/status/{id}/`` — body ``{"state", "reason"}``; ``state`` is required
  and must be one the vendor lists for PUT. A device may report any of them whether or
  not it read the inbox (it may have been told another way, or re-flashed): queued work
  is dispatched on the way. ``Command Scheduled`` acknowledges the command for later (it
  reads ``Command Scheduled`` until the next report); ``Command Cancelled`` stops work
  in progress too (the device stopped its own run). The transition table
  (:mod:`opstatus.domain.states`) decides the rest. ``reason`` becomes the execution's
  ``error`` for ``Command Failure``/``Command TimeOut`` and ``details.reason`` otherwise.
  The document lists 200/400/401/500 for PUT, so every refusal (unknown id, a role that
  may not, an illegal step, a bad media type) is a 400 whose ``content.error`` says which.
- ``GET /v2/command-inbox/?device_id=`` — what the device(s) should run now: up to 10
  commands per device, delivered (``Command Initiated``) until acknowledged.

Every answer is the envelope ``{"code", "message", "content"}``: ``code`` is 0 on success
and the HTTP status otherwise; ``message`` says what happened. Contents:

- status object: ``{"id", "request", "device", "state", "reason", "kind", "parameters",
  "internal", "progress", "attempt", "version", "created_at", "queued_at", "started_at",
  "updated_at", "finished_at"}`` — times RFC 3339 UTC or null; ``created_at`` is the
  command request's; ``reason`` is the error or the last PUT reason (or null).
- list and inbox: ``{"count", "results": [...]}`` (``count`` = results on this page; the
  list adds ``limit`` and ``offset``; a page shorter than ``limit`` is the last).
- error: ``{"error": code, ...}`` plus ``state`` (a 409's current state) or ``parameter``.

Errors (GET): 400 bad parameters, 401 credentials, 403 a role that may not or an agent
naming a device it is not bound to, 404 unknown id (also another device's command for an
agent key, which is hidden as the tenant wall hides), 429; PUT: 400, 401, 429 (above).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from opstatus.dialects.base import Call, Dialect, required
from opstatus.domain import errors
from opstatus.domain.records import (
    Execution,
    ExecutionQuery,
    ExecutionUpdate,
    Operation,
    OperationQuery,
)
from opstatus.domain.roles import Action, Role
from opstatus.domain.states import State
from opstatus.service.credentials import Principal
from opstatus.web import params
from opstatus.web.endpoint import Param

#: canonical execution state -> Command Status ``state``
STATES: dict[State, str] = {
    State.SCHEDULED: "Command Scheduled",
    State.QUEUED: "Command Queued",
    State.DISPATCHED: "Command Initiated",
    State.ACKNOWLEDGED: "Command Acknowledged",
    State.IN_PROGRESS: "Command In Progress",
    State.SUCCEEDED: "Command Success",
    State.FAILED: "Command Failure",
    State.TIMED_OUT: "Command TimeOut",
    State.CANCELLED: "Command Cancelled",
}
_NAMED = {name: state for state, name in STATES.items()}
_CANONICAL = {str(state): state for state in STATES}
SCHEDULED = STATES[State.SCHEDULED]
#: what the details of an acknowledged execution carry once its device reported
#: ``Command Scheduled``: the device accepted the command and will run it later
DEFERRED = "deferred"
#: the vendor's PUT body enum, in its order -> the state a report steps to. Queued and
#: initiated are the engine's; ``Command Scheduled`` from a device is an acceptance
#: for later (the canonical ``scheduled`` is the server's own wait for ``schedule_at``).
PUT_STATES: dict[str, State] = {
    STATES[s]: s
    for s in (
        State.ACKNOWLEDGED, State.IN_PROGRESS, State.TIMED_OUT, State.SUCCEEDED, State.FAILED,
    )
} | {SCHEDULED: State.ACKNOWLEDGED, STATES[State.CANCELLED]: State.CANCELLED}  # fmt: skip
#: the PUT's document lists 200, 400, 401 and 500: every refusal is a 400
PUT_STATUSES = dict.fromkeys((403, 404, 409, 410, 412, 413, 415, 422, 423), 400)
#: PUT states whose reason is the execution's error
_ERRORS = frozenset({State.FAILED, State.TIMED_OUT})
INBOX_LIMIT = 10
_encoder = msgspec.json.Encoder()


class StatusUpdate(msgspec.Struct, forbid_unknown_fields=True):
    """The PUT body."""

    state: str
    reason: Annotated[str, msgspec.Meta(max_length=2000)] | None = None


def _envelope(code: int, message: str, content: Any, status: int = 200) -> Response:
    body = _encoder.encode({"code": code, "message": message, "content": content})
    return Response(body, status, media_type="application/json")


def render_error(request: Request, status: int, exc: errors.DomainError) -> Response:
    """The envelope for a domain error: ``code`` its status, ``content.error`` its code."""
    content: dict[str, Any] = {"error": exc.code}
    if isinstance(exc, errors.Conflict) and exc.state in _CANONICAL:
        content["state"] = STATES[_CANONICAL[exc.state]]
    if exc.context.get("parameter"):
        content["parameter"] = str(exc.context["parameter"])
    return _envelope(status, exc.detail, content, status)


DIALECT = Dialect(
    name="commandstatus", tag="Command Status", prefixes=("/commands", "/v2/command-inbox"),
    render=render_error,
    error_schema={
        "type": "object",
        "properties": {
            "code": {"type": "integer"}, "message": {"type": "string"},
            "content": {"type": "object", "properties": {"error": {"type": "string"}}},
        },
        "required": ["code", "message", "content"],
    },
)  # fmt: skip


def status_object(e: Execution, op: Operation) -> dict[str, Any]:
    """One command status object: an execution with its command request's kind."""
    return {
        "id": e.id, "request": e.operation_id, "device": e.target,
        "state": _state(e), "reason": e.error or e.details.get("reason"),
        "kind": op.kind, "parameters": dict(op.parameters), "internal": op.internal,
        "progress": e.progress, "attempt": e.attempt, "version": e.version,
        "created_at": op.created_at, "queued_at": e.queued_at, "started_at": e.started_at,
        "updated_at": e.updated_at, "finished_at": e.finished_at,
    }  # fmt: skip


def _state(e: Execution) -> str:
    """The ``state`` of an execution: acknowledged-for-later reads ``Command Scheduled``."""
    if e.state is State.ACKNOWLEDGED and e.details.get(DEFERRED) is True:
        return SCHEDULED
    return STATES[e.state]


async def status_objects(call: Call, found: Sequence[Execution]) -> list[Any]:
    """Status objects for ``found``, reading their command requests in one query."""
    wanted = list(dict.fromkeys(e.operation_id for e in found))
    ops: dict[str, Operation] = {}
    if wanted:
        query = OperationQuery(ids=wanted, limit=len(wanted))
        page = await call.api.operations.find(call.tenant, query)
        ops = {view.operation.id: view.operation for view in page.items}
    # an execution whose command request was purged meanwhile is gone with it
    return [status_object(e, ops[e.operation_id]) for e in found if e.operation_id in ops]


async def _single(call: Call, execution: Execution) -> Any:
    found = await status_objects(call, [execution])
    if not found:
        raise errors.NotFound(f"no execution {execution.id!r}")
    return found[0]


def _see(who: Principal, device: str) -> None:
    who.require(Action.PULL if who.role is Role.AGENT else Action.READ, device)


async def _own(call: Call, action: Action) -> Execution:
    """The addressed execution; an agent key's view ends at its own devices."""
    who, execution_id = call.who, call.path("id")
    execution = await call.api.operations.get_execution(who.tenant, execution_id)
    if not who.reaches(execution.target):
        raise errors.NotFound(f"no execution {execution_id!r}")
    who.require(action, execution.target)
    return execution


def _states(request: Request) -> list[State]:
    out = []
    for name in params.csv(request, "state"):
        if name not in _NAMED:
            allowed = ", ".join(f'"{n}"' for n in STATES.values())
            raise errors.Invalid(f"state must be one of {allowed}", parameter="state")
        out.append(_NAMED[name])
    return out


@DIALECT.route(
    "GET", "/commands/v0/status/",
    params=(
        Param(name="request", description="operation ids, comma-separated"),
        Param(name="device", description="target ids, comma-separated"),
        Param(name="state", description="states, comma-separated"),
        Param(name="exclude_internal_commands", schema={"type": "boolean"}),
        Param(name="limit", schema={"type": "integer", "minimum": 1}),
        Param(name="offset", schema={"type": "integer", "minimum": 0}),
    ),
    errors=(400, 403),
)  # fmt: skip
async def list_status(call: Call) -> Response:
    """Get status list for command request."""
    request, who = call.request, call.who
    names = ["request", "device", "state", "exclude_internal_commands", "limit", "offset"]
    params.only(request, names)
    devices = params.csv(request, "device")
    if who.role is Role.AGENT and not devices:
        devices = sorted(who.targets)
    for device in devices:
        _see(who, device)
    if not devices:
        who.require(Action.READ)
    ops = call.api.operations
    limit = params.integer(request, "limit", 50, low=1, high=ops.limits.max_page) or 50
    offset = params.integer(request, "offset", 0, high=1_000_000) or 0
    query = ExecutionQuery(
        operation_ids=params.csv(request, "request"), targets=devices,
        states=_states(request), limit=limit, offset=offset,
        internal=False if params.boolean(request, "exclude_internal_commands") else None,
    )  # fmt: skip
    results = await status_objects(call, await ops.find_executions(who.tenant, query))
    content = {"count": len(results), "limit": limit, "offset": offset, "results": results}
    return _envelope(0, "Status list for a command request", content)


@DIALECT.route("GET", "/commands/v0/status/{id}/", errors=(400, 403, 404))
async def get_status(call: Call) -> Response:
    """Get a command status."""
    params.only(call.request, [])
    execution = await _own(call, Action.PULL if call.who.role is Role.AGENT else Action.READ)
    return _envelope(0, "Command status information", await _single(call, execution))


@DIALECT.route(
    "PUT", "/commands/v0/status/{id}/", body=StatusUpdate,
    body_missing="a JSON body {state, reason} is required", errors=(400, 403, 404, 409),
    statuses=PUT_STATUSES,
)  # fmt: skip
async def put_status(call: Call) -> Response:
    """Update command status."""
    params.only(call.request, [])
    execution = await _own(call, Action.REPORT)
    body: StatusUpdate = await call.body()
    if body.state not in PUT_STATES:
        allowed = ", ".join(f'"{name}"' for name in PUT_STATES)
        raise errors.Invalid(f"state must be one of {allowed}", parameter="state")
    changed = await call.api.operations.update_execution(
        call.tenant, execution.id, _update(execution, body)
    )
    return _envelope(0, "Command status successfully updated.", await _single(call, changed))


def _update(execution: Execution, body: StatusUpdate) -> ExecutionUpdate:
    """The report a PUT makes: whatever the device last read, it may report any state
    the document lists (``deliver``), and a device that stopped its own run may say so
    (``force``)."""
    state: State | None = PUT_STATES[body.state]
    reason = body.reason
    details: dict[str, Any] = {"reason": reason} if reason is not None else {}
    if body.state == SCHEDULED:
        details[DEFERRED] = True
        if execution.state is State.ACKNOWLEDGED:
            state = None  # already accepted: only the deferral is news
    error = reason if state in _ERRORS else None
    return ExecutionUpdate(
        state=state, reason=reason, error=error, details=None if error else (details or None),
        deliver=True, force=state is State.CANCELLED,
    )  # fmt: skip


@DIALECT.route(
    "GET", "/v2/command-inbox/",
    params=(required("device_id", "target ids, comma-separated"),),
    errors=(400, 403),
)  # fmt: skip
async def inbox(call: Call) -> Response:
    """Get Queued commands to be executed by the physical device."""
    params.only(call.request, ["device_id"])
    who = call.who
    devices = params.csv(call.request, "device_id", most=100)
    if not devices:
        raise errors.Invalid("query parameter 'device_id' is required", parameter="device_id")
    for device in devices:
        who.require(Action.PULL, device)
    ops = call.api.operations
    found = []
    for device in devices:
        found += [item.execution for item in await ops.claim_inbox(who.tenant, device, INBOX_LIMIT)]
    results = await status_objects(call, found)
    return _envelope(
        0, "List of Queued Command Status", {"count": len(results), "results": results}
    )
