"""RSA G&L dialect: ``GET /aveksa/command.submit?cmd=getRunStatus`` (DESIGN.md §6, seed 002).

``run-id`` is the operation's per-tenant ``number``; ``format=properties`` (the
default) or ``json``. Errors are the product's HTML page with the request's own
query string, byte for byte as the seed shows them (its 404 body breaks the line
inside "Query String", its 412 body does not). Where the seed is silent:

- ``start-time`` is when the first execution left the queue, else when the run was
  created; ``completed-time`` is present once the run has finished (Completed or
  Aborted); times are UTC ``YYYY-MM-DD HH:MM:SS``.
- An unknown ``cmd`` or ``format`` value is an invalid parameter like an unknown
  run-id (404, "The cmd X is invalid."); a missing ``cmd`` is a missing parameter
  (412); a non-numeric run-id is an invalid one (404).
- A purged run answers 410 ("The run-id N was purged."), as in every dialect; no
  credential or a bad one 401, a role that may not read (agent) 403, too many
  requests 429 — all in the same HTML page.
"""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from opstatus.dialects import common
from opstatus.domain import errors
from opstatus.domain.roles import Action
from opstatus.domain.states import OperationState
from opstatus.service.operations import OperationView
from opstatus.web import problems

COMMAND = "getRunStatus"
FORMATS = ("properties", "json")
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
PAGE = "<html>\n<head>\n<title>Error</title>\n</head>\n<body>{}</body>\n</html>"

_O = OperationState
#: canonical operation state -> RSA ``overall-status``; the only place the spelling lives
OVERALL_STATUS: dict[OperationState, str] = {
    _O.SCHEDULED: "New",
    _O.QUEUED: "New",
    _O.RUNNING: "Running",
    _O.SUCCEEDED: "Completed",
    _O.FAILED: "Aborted",
    _O.CANCELLED: "Aborted",
}


def _text(value: str) -> str:
    """Keep markup out of the page; ``&`` stays as the seed prints query strings."""
    return value.replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def page(request: Request, status: int, message: str, *, wrap: bool) -> Response:
    """The product's error page: ``message`` then the request's query string."""
    query = "Query\nString=" if wrap else "Query String="
    body = PAGE.format(_text(f"{message} {query}{request.url.query}"))
    headers = {"X-Content-Type-Options": "nosniff"}
    return Response(body, status, headers, media_type="text/html")


def _invalid(request: Request, name: str, value: str) -> Response:
    return page(request, 404, f"The {name} {value} is invalid.", wrap=True)


def _required(request: Request, name: str) -> Response:
    return page(request, 412, f"The parameter {name} is required.", wrap=False)


async def command_submit(request: Request) -> Response:
    """``GET /aveksa/command.submit``: getRunStatus for one run."""
    try:
        who, limits = await common.principal(request)
        request.state.key_id = who.key_id  # for the access log
        who.require(Action.READ)
    except errors.DomainError as exc:
        return _error(request, exc)
    q = request.query_params
    cmd = q.get("cmd")
    if not cmd:
        return _required(request, "cmd")
    if cmd != COMMAND:
        return _invalid(request, "cmd", cmd)
    fmt = q.get("format") or FORMATS[0]
    if fmt not in FORMATS:
        return _invalid(request, "format", fmt)
    run_id = q.get("run-id")
    if not run_id:
        return _required(request, "run-id")
    if not run_id.isascii() or not run_id.isdigit() or len(run_id) > 18:
        return _invalid(request, "run-id", run_id)
    try:
        view = await common.api(request).operations.get_by_number(who.tenant, int(run_id))
    except errors.NotFound:
        return _invalid(request, "run-id", run_id)
    except errors.Gone:
        return page(request, 410, f"The run-id {run_id} was purged.", wrap=True)
    data = run_status(view)
    if fmt == "json":
        body = msgspec.json.encode({"data": data})
        return Response(body, 200, limits, media_type="application/json")
    lines = "".join(f"{key}={value}\n" for key, value in data.items())
    return Response(lines, 200, limits, media_type="text/plain")


def run_status(view: OperationView) -> dict[str, str]:
    """The response fields of one run, in the seed's order."""
    op = view.operation
    data = {
        "type": COMMAND,
        "overall-status": OVERALL_STATUS[op.state],
        "start-time": _time(op.started_at or op.created_at),
    }
    if op.completed_at is not None:
        data["completed-time"] = _time(op.completed_at)
    return data


def _time(value: datetime) -> str:
    return value.astimezone(UTC).strftime(TIME_FORMAT)


def _error(request: Request, exc: errors.DomainError) -> Response:
    status = problems.status_of(exc)
    response = page(request, status, exc.detail, wrap=False)
    response.headers.update(common.error_headers(exc))
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="aveksa"'
    return response


def routes() -> list[BaseRoute]:
    """The RSA route."""
    return [Route("/aveksa/command.submit", command_submit, methods=["GET"])]
