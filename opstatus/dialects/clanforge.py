"""Unity Multiplay Clanforge image updates (seeds/003, DESIGN.md §6).

Every route is a ``GET``, as Clanforge's are; every answer is JSON.

- ``/cfp/v1/imageupdate/create?imageid&desc&machineid&accountserviceid[&url]`` triggers an
  operation of kind ``image-update`` with parameters ``{"imageid", "desc", "url"}``.
  ``machineid`` names the target; a comma-separated list names several machines (one
  execution each, so ``jobfailed`` can count them); every machine must be a registered
  target of the tenant (an unknown one answers 400, naming it). Answers 200 with the
  status document below (``jobstateid`` 3 Queued at once): a superset of
  ``{"updateid": N, "success": true}``.
- ``/cfp/v1/imageupdate/{updateid}/status?accountserviceid=`` reports the update.
- ``/cfp/v1/imageupdate/{updateid}/retry?accountserviceid=`` queues every failed or
  timed-out machine again and answers the status document; 409 when none failed.

``updateid`` is the operation's per-tenant ``number``; ``accountserviceid`` is the tenant.
Credentials are Basic ``key id : secret`` as documented (an ``X-API-Key`` or Bearer key is
accepted too). A key reaches only its own tenant's account service: any other
``accountserviceid`` answers 403 whether or not it exists, so nothing leaks about others.

Status document (unix seconds throughout): ``updateid`` int, ``jobcreated`` int,
``joberror`` string|null, ``jobeta`` int|null, ``jobfailed`` int (failed + timed-out
machines), ``jobprogress`` int 0-100 (canonical progress, rounded down), ``jobstart``
string|null (a string, as documented), ``jobstateid`` int, ``jobstatename`` string,
``jobupdated`` int, ``success`` true.

The state is the operation's derived state mapped by :data:`JOB_STATES`. ``1 Created`` is
the instant before the first execution is queued; the service creates an operation and its
executions in one transaction, so it is only reported for an operation without executions,
which cannot be observed in practice.

Errors answer ``{"success": false, "error": "..."}``: 400 missing or invalid parameters,
401 bad credentials, 403 another account service or a role that may not, 404 unknown
``updateid``, 409 nothing to retry, 410 purged update, 429 rate limited.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from opstatus.dialects import common
from opstatus.domain import derive, errors, states
from opstatus.domain.roles import Action
from opstatus.domain.states import OperationState, State
from opstatus.service.credentials import Principal
from opstatus.service.operations import OperationView
from opstatus.service.requests import CreateOperation
from opstatus.web import params, problems

KIND = "image-update"
#: the operation's derived state -> (jobstateid, jobstatename); DESIGN.md §6
JOB_STATES: dict[OperationState, tuple[int, str]] = {
    OperationState.SCHEDULED: (2, "Pending"),
    OperationState.QUEUED: (3, "Queued"),
    OperationState.RUNNING: (4, "Running"),
    OperationState.SUCCEEDED: (5, "Complete"),
    OperationState.FAILED: (6, "Failed"),
    OperationState.CANCELLED: (7, "Squashed"),
}
CREATED = (1, "Created")  #: before any execution exists (never observable; see above)
#: what ``jobfailed`` counts and ``/retry`` re-queues: the states a retry leads out of
FAILURES = tuple(
    old
    for (old, new), via in states.TRANSITIONS.items()
    if new is State.QUEUED and via is states.Via.RETRY
)
_encoder = msgspec.json.Encoder()

Handler = Callable[[Request, Principal], Awaitable[dict[str, Any]]]


def _unix(moment: datetime | None) -> int | None:
    return None if moment is None else math.floor(moment.timestamp())


def status_document(view: OperationView, now: datetime) -> dict[str, Any]:
    """The Clanforge status of one image update."""
    op = view.operation
    stateid, statename = JOB_STATES[op.state] if op.total else CREATED
    failed = sum(op.counts.get(s, 0) for s in FAILURES)
    error = (op.error or f"{failed} of {op.total} machines failed") if failed else None
    start = _unix(op.started_at)
    return {
        "updateid": op.number,
        "jobcreated": _unix(op.created_at),
        "joberror": error,
        "jobeta": _unix(derive.eta(op, now)),
        "jobfailed": failed,
        "jobprogress": min(100, math.floor(op.progress)),
        "jobstart": None if start is None else str(start),
        "jobstateid": stateid,
        "jobstatename": statename,
        "jobupdated": _unix(op.updated_at),
        "success": True,
    }


def _required(request: Request, name: str) -> str:
    value = params.text(request, name)
    if value is None or not value.strip():
        raise errors.Invalid(f"query parameter {name!r} is required", parameter=name)
    return value.strip()


def _account(request: Request, who: Principal, action: Action) -> str:
    """The tenant named by ``accountserviceid``, if these credentials reach it."""
    account = _required(request, "accountserviceid")
    if account != who.tenant:
        raise errors.Forbidden(f"these credentials do not reach account service {account!r}")
    who.require(action)
    return account


async def _update(request: Request, tenant: str) -> OperationView:
    raw = str(request.path_params["updateid"])
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18 or int(raw) < 1:
        raise errors.Invalid("updateid must be a positive integer", parameter="updateid")
    try:
        return await common.api(request).operations.get_by_number(tenant, int(raw))
    except errors.NotFound:
        raise errors.NotFound(f"no image update {raw}") from None
    except errors.Gone:
        raise errors.Gone(f"image update {raw} was purged") from None


async def create(request: Request, who: Principal) -> dict[str, Any]:
    """Trigger an image update on one machine (or a comma-separated list)."""
    params.only(request, ["imageid", "desc", "machineid", "accountserviceid", "url"])
    tenant = _account(request, who, Action.TRIGGER)
    parameters = {
        "imageid": _required(request, "imageid"),
        "desc": _required(request, "desc"),
        "url": params.text(request, "url"),
    }
    machines = params.csv(request, "machineid")
    if not machines:
        raise errors.Invalid("query parameter 'machineid' is required", parameter="machineid")
    ops = common.api(request).operations
    try:
        view, _ = await ops.create(
            tenant, CreateOperation(kind=KIND, targets=machines, parameters=parameters)
        )
    except errors.UnknownTargets as exc:
        # A machineid names a machine of the account service's fleet (a registered
        # target): an unknown one is an invalid parameter, as on Clanforge (400).
        raise errors.Invalid(exc.detail.partition(";")[0], parameter="machineid") from None
    return status_document(view, ops.clock())


async def status(request: Request, who: Principal) -> dict[str, Any]:
    """The status of one image update."""
    params.only(request, ["accountserviceid"])
    view = await _update(request, _account(request, who, Action.READ))
    return status_document(view, common.api(request).operations.clock())


async def retry(request: Request, who: Principal) -> dict[str, Any]:
    """Queue the update's failed and timed-out machines again."""
    params.only(request, ["accountserviceid"])
    tenant = _account(request, who, Action.CANCEL)
    view = await _update(request, tenant)
    failed = [e for e in view.executions or () if e.state in FAILURES]
    if not failed:
        _, name = JOB_STATES[view.operation.state]
        raise errors.Conflict(
            f"image update {view.operation.number} has no failed machines to retry ({name})",
            state=name,
        )
    ops = common.api(request).operations
    for execution in failed:
        await ops.retry_execution(tenant, execution.id)
    return status_document(await ops.get(tenant, view.operation.id), ops.clock())


def _json(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        _encoder.encode(content), status, headers=headers, media_type="application/json"
    )


def error_response(exc: errors.DomainError) -> Response:
    """The Clanforge error body for a domain error; status from the HTTP layer's table."""
    status = problems.status_of(exc)
    headers = common.error_headers(exc)
    if status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="clanforge"'
    return _json({"success": False, "error": exc.detail}, status, headers)


def _route(path: str, handler: Handler) -> Route:
    async def run(request: Request) -> Response:
        limit_headers: dict[str, str] = {}
        try:
            who, limit_headers = await common.principal(request)
            request.state.key_id = who.key_id  # for the access log
            response = _json(await handler(request, who))
        except errors.DomainError as exc:
            response = error_response(exc)
        response.headers.update(limit_headers)
        return response

    return Route(path, run, methods=["GET"], name=f"clanforge.{handler.__name__}")


def routes() -> list[BaseRoute]:
    """The Clanforge image update routes."""
    return [
        _route("/cfp/v1/imageupdate/create", create),
        _route("/cfp/v1/imageupdate/{updateid}/status", status),
        _route("/cfp/v1/imageupdate/{updateid}/retry", retry),
    ]
