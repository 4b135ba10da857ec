"""RSA G&L dialect: ``GET /aveksa/command.submit?cmd=getRunStatus`` (docs/dialects.md).

``run-id`` is the operation's per-tenant ``number``; ``format=properties`` (the
default) or ``json``. Errors are the product's HTML page with the request's own
query string, byte for byte as RSA documents them (its 404 body breaks the line
inside "Query String", its 412 body does not). Where RSA's documentation is silent:

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

from opstatus.dialects.base import Call, Dialect
from opstatus.domain import errors
from opstatus.domain.roles import Action
from opstatus.domain.states import OperationState
from opstatus.service.operations import OperationView
from opstatus.web.endpoint import Param

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
    """Keep markup out of the page; ``&`` stays as RSA prints query strings."""
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


def render_error(request: Request, status: int, exc: errors.DomainError) -> Response:
    """The product's error page with the error's words."""
    return page(request, status, exc.detail, wrap=False)


DIALECT = Dialect(
    name="rsa", tag="RSA G&L", prefixes=("/aveksa",), render=render_error, realm="aveksa",
    error_media=("text/html",), error_schema={"type": "string"},
)  # fmt: skip


@DIALECT.route(
    "GET", "/aveksa/command.submit", action=Action.READ,
    params=(
        Param(name="cmd", required=True, schema={"type": "string", "enum": [COMMAND]}),
        Param(name="run-id", required=True, schema={"type": "string", "pattern": "^[0-9]+$"}),
        Param(name="format", schema={"type": "string", "enum": list(FORMATS)}),
    ),
    errors=(403, 404, 410, 412), media=("text/plain", "application/json"),
)  # fmt: skip
async def command_submit(call: Call) -> Response:
    """getRunStatus: the status of one run (``run-id``, its per-tenant number)."""
    request = call.request
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
        view = await call.api.operations.get_by_number(call.tenant, int(run_id))
    except errors.NotFound:
        return _invalid(request, "run-id", run_id)
    except errors.Gone:
        return page(request, 410, f"The run-id {run_id} was purged.", wrap=True)
    data = run_status(view)
    if fmt == "json":
        return Response(msgspec.json.encode({"data": data}), media_type="application/json")
    lines = "".join(f"{key}={value}\n" for key, value in data.items())
    return Response(lines, media_type="text/plain")


def run_status(view: OperationView) -> dict[str, str]:
    """The response fields of one run, in the documented order."""
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
