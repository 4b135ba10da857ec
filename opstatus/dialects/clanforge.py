"""Unity Multiplay Clanforge image updates (docs/dialects.md).

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
``joberror`` string|null (says how many machines failed), ``jobeta`` int|null,
``jobfailed`` int, the documented numeric flag: 1 when a machine failed or timed out,
else 0, ``jobprogress`` int 0-100 (the machines' mean progress, rounded down: a failure
keeps the progress reached), ``jobstart`` string|null (a string, as documented; when the
first machine started, null for a job that never started), ``jobstateid`` int,
``jobstatename`` string,
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
from datetime import datetime
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from opstatus.dialects.base import Call, Dialect, required
from opstatus.domain import derive, errors, states
from opstatus.domain.roles import Action
from opstatus.domain.states import OperationState, State
from opstatus.service.credentials import Principal
from opstatus.service.operations import OperationView
from opstatus.service.requests import CreateOperation
from opstatus.web import params
from opstatus.web.endpoint import Param

KIND = "image-update"
#: the operation's derived state -> (jobstateid, jobstatename)
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


def _unix(moment: datetime | None) -> int | None:
    return None if moment is None else math.floor(moment.timestamp())


def status_document(view: OperationView, now: datetime) -> dict[str, Any]:
    """The Clanforge status of one image update."""
    op = view.operation
    stateid, statename = JOB_STATES[op.state] if op.total else CREATED
    failed = sum(op.counts.get(s, 0) for s in FAILURES)
    # jobfailed is only a flag, so the count is told here, with the last error
    error = f"{failed} of {op.total} machines failed" if failed else None
    if error and op.error:
        error = f"{error}: {op.error}"
    progress, started = _reached(view)
    return {
        "updateid": op.number,
        "jobcreated": _unix(op.created_at),
        "joberror": error,
        "jobeta": _unix(derive.eta(op, now)),
        "jobfailed": 1 if failed else 0,
        "jobprogress": min(100, math.floor(progress)),
        "jobstart": None if started is None else str(started),
        "jobstateid": stateid,
        "jobstatename": statename,
        "jobupdated": _unix(op.updated_at),
        "success": True,
    }


def _reached(view: OperationView) -> tuple[float, int | None]:
    """The progress the machines reached and when the first of them started.

    The operation's own figures count a finished execution as 100 % and start the
    operation when any execution leaves the queue (a queue timeout too); Clanforge
    reports the progress actually reached and no start for a job that never started.
    """
    executions = view.executions
    if not executions:
        return view.operation.progress, _unix(view.operation.started_at)
    progress = sum(e.progress for e in executions) / len(executions)
    starts = [e.started_at for e in executions if e.started_at is not None]
    return progress, _unix(min(starts)) if starts else None


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


async def _update(call: Call, tenant: str) -> OperationView:
    raw = call.path("updateid")
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18 or int(raw) < 1:
        raise errors.Invalid("updateid must be a positive integer", parameter="updateid")
    try:
        return await call.api.operations.get_by_number(tenant, int(raw))
    except errors.NotFound:
        raise errors.NotFound(f"no image update {raw}") from None
    except errors.Gone:
        raise errors.Gone(f"image update {raw} was purged") from None


def _json(content: Any, status: int = 200) -> Response:
    return Response(_encoder.encode(content), status, media_type="application/json")


def render_error(request: Request, status: int, exc: errors.DomainError) -> Response:
    """``{"success": false, "error": "..."}``."""
    return _json({"success": False, "error": exc.detail}, status)


DIALECT = Dialect(
    name="clanforge", tag="Unity Clanforge", prefixes=("/cfp",), render=render_error,
    realm="clanforge", scheme="Basic",
    error_schema={
        "type": "object",
        "properties": {"success": {"const": False}, "error": {"type": "string"}},
        "required": ["success", "error"],
    },
)  # fmt: skip
ACCOUNT = required("accountserviceid", "the tenant")


@DIALECT.route(
    "GET", "/cfp/v1/imageupdate/create",
    params=(
        *(required(n) for n in ("imageid", "desc", "machineid")),
        ACCOUNT, Param(name="url"),
    ),
    errors=(400, 403),
)  # fmt: skip
async def create(call: Call) -> Response:
    """Trigger an image update on one machine (or a comma-separated list)."""
    request = call.request
    params.only(request, ["imageid", "desc", "machineid", "accountserviceid", "url"])
    tenant = _account(request, call.who, Action.TRIGGER)
    parameters = {
        "imageid": _required(request, "imageid"),
        "desc": _required(request, "desc"),
        "url": params.text(request, "url"),
    }
    machines = params.csv(request, "machineid")
    if not machines:
        raise errors.Invalid("query parameter 'machineid' is required", parameter="machineid")
    ops = call.api.operations
    try:
        view, _ = await ops.create(
            tenant, CreateOperation(kind=KIND, targets=machines, parameters=parameters)
        )
    except errors.UnknownTargets as exc:
        # A machineid names a machine of the account service's fleet (a registered
        # target): an unknown one is an invalid parameter, as on Clanforge (400).
        raise errors.Invalid(exc.detail.partition(";")[0], parameter="machineid") from None
    return _json(status_document(view, ops.clock()))


@DIALECT.route(
    "GET", "/cfp/v1/imageupdate/{updateid}/status", params=(ACCOUNT,),
    errors=(400, 403, 404, 410),
)  # fmt: skip
async def status(call: Call) -> Response:
    """The status of one image update."""
    params.only(call.request, ["accountserviceid"])
    view = await _update(call, _account(call.request, call.who, Action.READ))
    return _json(status_document(view, call.api.operations.clock()))


@DIALECT.route(
    "GET", "/cfp/v1/imageupdate/{updateid}/retry", params=(ACCOUNT,),
    errors=(400, 403, 404, 409, 410),
)  # fmt: skip
async def retry(call: Call) -> Response:
    """Queue the update's failed and timed-out machines again."""
    params.only(call.request, ["accountserviceid"])
    tenant = _account(call.request, call.who, Action.CANCEL)
    view = await _update(call, tenant)
    failed = [e for e in view.executions or () if e.state in FAILURES]
    if not failed:
        _, name = JOB_STATES[view.operation.state]
        raise errors.Conflict(
            f"image update {view.operation.number} has no failed machines to retry ({name})",
            state=name,
        )
    ops = call.api.operations
    for execution in failed:
        await ops.retry_execution(tenant, execution.id)
    return _json(status_document(await ops.get(tenant, view.operation.id), ops.clock()))
