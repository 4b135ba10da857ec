"""The IoT Command Status API (seeds/004, DESIGN.md §6).

A *command request* is an operation; a *command status object* is one execution (one
device = one target). Credentials: ``X-API-Key`` (also ``Authorization: Bearer``).

- ``GET /commands/v0/status/`` — filters ``request`` (operation ids) and ``device`` (target
  ids), both comma-separated; ``state`` (an enum string; a comma-separated list of them
  also works); ``exclude_internal_commands`` (default false); ``limit`` (1-1000, default
  50) and ``offset``. Newest first.
- ``GET /commands/v0/status/{id}/`` — one status object.
- ``PUT /commands/v0/status/{id}/`` — body ``{"state", "reason"}``; ``state`` is required
  and must be one the seed lists for PUT (otherwise 400). The transition table decides the
  step; one it does not list answers 409 with the current state (DESIGN.md §1), e.g.
  ``Command Scheduled`` (nothing steps back to scheduled) or ``Command Cancelled`` on work
  in progress (that needs a forced cancel). ``reason`` becomes the execution's ``error``
  for ``Command Failure``/``Command TimeOut`` and ``details.reason`` otherwise.
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

Errors: 400 bad parameters or body, 401 credentials, 403 a role that may not or an agent
naming a device it is not bound to, 404 unknown id (also another device's command for an
agent key, which is hidden as the tenant wall hides), 409 illegal step, 413/415 body, 429.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from opstatus.dialects import common
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
from opstatus.web import endpoint, params, problems

#: canonical execution state -> Command Status ``state``; DESIGN.md §6
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
#: the states the seed's PUT body enum lists (queued and initiated are the engine's)
WRITABLE = frozenset(STATES) - {State.QUEUED, State.DISPATCHED}
#: PUT states whose reason is the execution's error
_ERRORS = frozenset({State.FAILED, State.TIMED_OUT})
INBOX_LIMIT = 10
_encoder = msgspec.json.Encoder()


class StatusUpdate(msgspec.Struct, forbid_unknown_fields=True):
    """The PUT body."""

    state: str
    reason: Annotated[str, msgspec.Meta(max_length=2000)] | None = None


_decoder = msgspec.json.Decoder(StatusUpdate)
Handler = Callable[[Request, Principal], Awaitable[tuple[str, Any]]]


def status_object(e: Execution, op: Operation) -> dict[str, Any]:
    """One command status object: an execution with its command request's kind."""
    return {
        "id": e.id, "request": e.operation_id, "device": e.target,
        "state": STATES[e.state], "reason": e.error or e.details.get("reason"),
        "kind": op.kind, "parameters": dict(op.parameters), "internal": op.internal,
        "progress": e.progress, "attempt": e.attempt, "version": e.version,
        "created_at": op.created_at, "queued_at": e.queued_at, "started_at": e.started_at,
        "updated_at": e.updated_at, "finished_at": e.finished_at,
    }  # fmt: skip


async def status_objects(request: Request, tenant: str, found: Sequence[Execution]) -> list[Any]:
    """Status objects for ``found``, reading their command requests in one query."""
    wanted = list(dict.fromkeys(e.operation_id for e in found))
    ops: dict[str, Operation] = {}
    if wanted:
        query = OperationQuery(ids=wanted, limit=len(wanted))
        page = await common.api(request).operations.find(tenant, query)
        ops = {view.operation.id: view.operation for view in page.items}
    # an execution whose command request was purged meanwhile is gone with it
    return [status_object(e, ops[e.operation_id]) for e in found if e.operation_id in ops]


async def _single(request: Request, tenant: str, execution: Execution) -> Any:
    found = await status_objects(request, tenant, [execution])
    if not found:
        raise errors.NotFound(f"no execution {execution.id!r}")
    return found[0]


def _see(who: Principal, device: str) -> None:
    who.require(Action.PULL if who.role is Role.AGENT else Action.READ, device)


async def _own(request: Request, who: Principal, action: Action) -> Execution:
    """The addressed execution; an agent key's view ends at its own devices."""
    execution_id = str(request.path_params["id"])
    execution = await common.api(request).operations.get_execution(who.tenant, execution_id)
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


async def list_status(request: Request, who: Principal) -> tuple[str, Any]:
    """Get status list for command request."""
    names = ["request", "device", "state", "exclude_internal_commands", "limit", "offset"]
    params.only(request, names)
    devices = params.csv(request, "device")
    if who.role is Role.AGENT and not devices:
        devices = sorted(who.targets)
    for device in devices:
        _see(who, device)
    if not devices:
        who.require(Action.READ)
    ops = common.api(request).operations
    limit = params.integer(request, "limit", 50, low=1, high=ops.limits.max_page) or 50
    offset = params.integer(request, "offset", 0, high=1_000_000) or 0
    query = ExecutionQuery(
        operation_ids=params.csv(request, "request"), targets=devices,
        states=_states(request), limit=limit, offset=offset,
        internal=False if params.boolean(request, "exclude_internal_commands") else None,
    )  # fmt: skip
    results = await status_objects(
        request, who.tenant, await ops.find_executions(who.tenant, query)
    )
    content = {"count": len(results), "limit": limit, "offset": offset, "results": results}
    return "Status list for a command request", content


async def get_status(request: Request, who: Principal) -> tuple[str, Any]:
    """Get a command status."""
    params.only(request, [])
    execution = await _own(request, who, Action.PULL if who.role is Role.AGENT else Action.READ)
    return "Command status information", await _single(request, who.tenant, execution)


async def put_status(request: Request, who: Principal) -> tuple[str, Any]:
    """Update command status."""
    params.only(request, [])
    execution = await _own(request, who, Action.REPORT)
    raw = await endpoint.read_body(request, common.api(request).max_body)
    if not raw:
        raise errors.Invalid("a JSON body {state, reason} is required", parameter="body")
    body = _decoder.decode(raw)
    state = _NAMED.get(body.state)
    if state not in WRITABLE:
        allowed = ", ".join(f'"{STATES[s]}"' for s in STATES if s in WRITABLE)
        raise errors.Invalid(f"state must be one of {allowed}", parameter="state")
    reason = body.reason
    update = ExecutionUpdate(
        state=state, reason=reason,
        error=reason if state in _ERRORS else None,
        details={"reason": reason} if reason is not None and state not in _ERRORS else None,
    )  # fmt: skip
    ops = common.api(request).operations
    changed = await ops.update_execution(who.tenant, execution.id, update)
    return "Command status successfully updated.", await _single(request, who.tenant, changed)


async def inbox(request: Request, who: Principal) -> tuple[str, Any]:
    """Get Queued commands to be executed by the physical device."""
    params.only(request, ["device_id"])
    devices = params.csv(request, "device_id", most=100)
    if not devices:
        raise errors.Invalid("query parameter 'device_id' is required", parameter="device_id")
    for device in devices:
        who.require(Action.PULL, device)
    ops = common.api(request).operations
    found = []
    for device in devices:
        found += [item.execution for item in await ops.claim_inbox(who.tenant, device, INBOX_LIMIT)]
    results = await status_objects(request, who.tenant, found)
    return "List of Queued Command Status", {"count": len(results), "results": results}


def _envelope(
    code: int, message: str, content: Any, status: int, headers: dict[str, str]
) -> Response:
    body = _encoder.encode({"code": code, "message": message, "content": content})
    return Response(body, status, headers=headers, media_type="application/json")


def error_response(exc: errors.DomainError) -> Response:
    """The envelope for a domain error; status from the HTTP layer's table."""
    status = problems.status_of(exc)
    content: dict[str, Any] = {"error": exc.code}
    if isinstance(exc, errors.Conflict) and exc.state in _CANONICAL:
        content["state"] = STATES[_CANONICAL[exc.state]]
    if exc.context.get("parameter"):
        content["parameter"] = str(exc.context["parameter"])
    headers = common.error_headers(exc)
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="opstatus"'
    return _envelope(status, exc.detail, content, status, headers)


def _route(path: str, method: str, handler: Handler) -> Route:
    async def run(request: Request) -> Response:
        limit_headers: dict[str, str] = {}
        try:
            who, limit_headers = await common.principal(request)
            request.state.key_id = who.key_id  # for the access log
            message, content = await handler(request, who)
            response = _envelope(0, message, content, 200, {})
        except errors.DomainError as exc:
            response = error_response(exc)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            content = {"error": "invalid_body"}
            response = _envelope(400, f"the body is not valid: {exc}", content, 400, {})
        response.headers.update(limit_headers)
        return response

    return Route(path, run, methods=[method], name=f"commandstatus.{handler.__name__}")


def routes() -> list[BaseRoute]:
    """The Command Status routes."""
    return [
        _route("/commands/v0/status/", "GET", list_status),
        _route("/commands/v0/status/{id}/", "GET", get_status),
        _route("/commands/v0/status/{id}/", "PUT", put_status),
        _route("/v2/command-inbox/", "GET", inbox),
    ]
