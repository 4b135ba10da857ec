"""RSA G&L dialect: ``/aveksa/command.submit?cmd=…`` (docs/dialects.md).

Commands: ``loginUser`` (``<username>`` key id, ``<password>`` key secret in the body)
and ``loginTrustedApp`` (``ClientId`` / ``ClientSecret`` headers) answer a Bearer
token; ``collectIdentities`` and ``collectMAEDC`` start one run per collector (the
tenant's targets labelled ``rsa-collector=identity`` / ``maedc``, the target's name
the collector's) and answer the csv ``run-id`` and a ``run-source-N`` per run, 409
while a chosen collector's run of that command is active; ``getRunStatus`` reports
one run. ``run-id`` is the operation's per-tenant ``number``; ``format=properties``
(the default) or ``json``. Errors are the product's HTML page with the request's own
query string, byte for byte as RSA documents them (its 404 body breaks the line
inside "Query String", its 412 body does not). Where RSA's documentation is silent:

- ``start-time`` is when the first execution left the queue, absent while the run
  is New (it never started); ``completed-time`` is present once the run has
  finished (Completed or Aborted); times are UTC ``YYYY-MM-DD HH:MM:SS``.
- An unknown ``cmd``, ``format``, ``name``, ``unify`` or ``force`` value is an
  invalid parameter like an unknown run-id (404, "The cmd X is invalid."); a missing
  ``cmd`` is a missing parameter (412); a non-numeric run-id is an invalid one (404).
- A purged run answers 410 ("The run-id N was purged."), as in every dialect; no
  credential or a bad one 401, a role that may not read (or start runs) 403, too
  many requests 429 — all in the same HTML page.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from xml.sax.saxutils import unescape

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from opstatus.dialects.base import Call, Dialect
from opstatus.domain import errors
from opstatus.domain.records import OperationQuery, Target
from opstatus.domain.roles import Action
from opstatus.domain.states import OperationState
from opstatus.service.credentials import Principal
from opstatus.service.operations import OperationView
from opstatus.service.requests import CreateOperation
from opstatus.web import auth
from opstatus.web.endpoint import Api, Param, read_bytes

COMMAND = "getRunStatus"
#: collect command -> the ``rsa-collector`` label value of the targets it runs on
COLLECT: dict[str, str] = {"collectIdentities": "identity", "collectMAEDC": "maedc"}
COLLECTOR_LABEL = "rsa-collector"
#: the kind of a run a collect command starts is this prefix and the command
KIND_PREFIX = "rsa."
LOGIN_USER, LOGIN_APP = "loginUser", "loginTrustedApp"
_ACTIVE = (OperationState.SCHEDULED, OperationState.QUEUED, OperationState.RUNNING)
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


def _missing(name: str) -> errors.PreconditionFailed:
    return errors.PreconditionFailed(f"The parameter {name} is required.")


_FIELD = {
    name: re.compile(f"<{name}>(.*?)</{name}>", re.DOTALL) for name in ("username", "password")
}


async def _login_user(request: Request, api: Api) -> Principal:
    """``<username>`` (the key id) and ``<password>`` (its secret) from the body, which
    RSA clients send under any content type; Basic semantics."""
    text = (await read_bytes(request, api.max_body)).decode(errors="replace")
    found: dict[str, str] = {}
    for name, pattern in _FIELD.items():
        match = pattern.search(text)
        if match is None or not match.group(1).strip():
            raise _missing(name)
        found[name] = unescape(match.group(1).strip())
    return await api.credentials.by_basic(found["username"], found["password"])


async def authenticate(request: Request, api: Api) -> Principal:
    """Login commands prove the caller their own way; every other command takes any
    opstatus credential (the Bearer token a login answered, or a key)."""
    cmd = request.query_params.get("cmd")
    if cmd == LOGIN_USER:
        return await _login_user(request, api)
    if cmd == LOGIN_APP:
        client_id = request.headers.get("clientid", "")
        secret = request.headers.get("clientsecret", "")
        if not client_id or not secret:
            raise _missing("ClientId" if not client_id else "ClientSecret")
        return await api.credentials.by_basic(client_id, secret)
    return await auth.authenticate(request, api.credentials)


DIALECT = Dialect(
    name="rsa", tag="RSA G&L", prefixes=("/aveksa",), render=render_error, realm="aveksa",
    error_media=("text/html",), error_schema={"type": "string"},
    statuses={423: 409},  # a collector's run already active: RSA answers 409
)  # fmt: skip

#: what a command answers: its fields, or an error page of its own
Answer = dict[str, str] | Response
_ROUTE = {
    "authenticate": authenticate,
    "params": (
        Param(name="cmd", required=True, schema={
            "type": "string", "enum": [LOGIN_USER, LOGIN_APP, *COLLECT, COMMAND],
        }),
        Param(name="run-id", schema={"type": "string", "pattern": "^[0-9]+$"},
              description="getRunStatus: the run"),
        Param(name="name", description="collect commands: one collector (default: all)"),
        Param(name="unify", schema={"type": "string", "enum": ["true", "false"]}),
        Param(name="force", schema={"type": "string", "enum": ["true", "false"]}),
        Param(name="format", schema={"type": "string", "enum": list(FORMATS)}),
    ),
    "errors": (403, 404, 409, 410, 412), "media": ("text/plain", "application/json"),
}  # fmt: skip


@DIALECT.route("GET", "/aveksa/command.submit", **_ROUTE)
async def command_submit(call: Call) -> Response:
    """Run one command: loginUser, loginTrustedApp, collectIdentities, collectMAEDC or
    getRunStatus (``run-id``: the run's per-tenant number)."""
    request = call.request
    q = request.query_params
    cmd = q.get("cmd")
    if not cmd:
        return _required(request, "cmd")
    run = COMMANDS.get(cmd)
    if run is None:
        return _invalid(request, "cmd", cmd)
    fmt = q.get("format") or FORMATS[0]
    if fmt not in FORMATS:
        return _invalid(request, "format", fmt)
    data = await run(call, cmd)
    if isinstance(data, Response):
        return data
    headers = {"Cache-Control": "no-store"} if cmd in (LOGIN_USER, LOGIN_APP) else None
    if fmt == "json":
        body = msgspec.json.encode({"data": data})
        return Response(body, headers=headers, media_type="application/json")
    lines = "".join(f"{key}={value}\n" for key, value in data.items())
    return Response(lines, headers=headers, media_type="text/plain")


@DIALECT.route("POST", "/aveksa/command.submit", **_ROUTE)
async def command_submit_post(call: Call) -> Response:
    """The same commands by POST (loginUser sends its body so)."""
    return await command_submit(call)


async def _login(call: Call, cmd: str) -> Answer:
    """A Bearer token for the key the login proved."""
    token, _ = await call.api.credentials.issue_token(call.who)
    return {"type": cmd, "token": token}


async def _collect(call: Call, cmd: str) -> Answer:
    """One run per collector of the command's type: csv run-ids, ``run-source-N``."""
    call.who.require(Action.TRIGGER)
    request = call.request
    q = request.query_params
    flags: dict[str, bool] = {}
    for name in ("unify", "force"):
        value = q.get(name)
        if value is not None and value not in ("true", "false"):
            return _invalid(request, name, value)
        flags[name] = value == "true"
    collectors = await call.api.operations.labelled(call.tenant, COLLECTOR_LABEL, COLLECT[cmd])
    chosen = q.get("name")
    if chosen is not None:
        collectors = [t for t in collectors if t.name == chosen]
        if not collectors:
            return _invalid(request, "name", chosen)
    if not collectors:
        raise errors.Conflict(f"No {COLLECT[cmd]} collector is configured.")
    kind = KIND_PREFIX + cmd
    await _refuse_busy(call, kind, collectors)
    data = {"type": cmd, "run-id": ""}
    numbers = []
    for target in collectors:
        # exclusive: two replicas racing past the check above still start one run
        create = CreateOperation(
            kind=kind, targets=[target.id], exclusive=True,
            parameters={"collector": target.name, **flags},
        )  # fmt: skip
        view, _ = await call.api.operations.create(call.tenant, create)
        numbers.append(str(view.operation.number))
        data[f"run-source-{view.operation.number}"] = target.name
    data["run-id"] = ",".join(numbers)
    return data


async def _refuse_busy(call: Call, kind: str, collectors: Sequence[Target]) -> None:
    """409 before any run starts when a chosen collector's run of ``kind`` is active."""
    query = OperationQuery(
        targets=[t.id for t in collectors], kinds=[kind], states=_ACTIVE, limit=1
    )
    page_ = await call.api.operations.find(call.tenant, query)
    if page_.items:
        busy: OperationView = page_.items[0]
        names = [t.name for t in collectors if t.id in busy.targets]
        raise errors.Conflict(
            f"The run cannot start: collector {names[0] if names else busy.targets[0]} "
            f"has run {busy.operation.number} active."
        )


async def _get_run_status(call: Call, cmd: str) -> Answer:
    """The status of one run."""
    call.who.require(Action.READ)
    request = call.request
    q = request.query_params
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
    return run_status(view)


COMMANDS: dict[str, Callable[[Call, str], Awaitable[Answer]]] = {
    LOGIN_USER: _login, LOGIN_APP: _login, COMMAND: _get_run_status,
    **dict.fromkeys(COLLECT, _collect),
}  # fmt: skip


def run_status(view: OperationView) -> dict[str, str]:
    """The response fields of one run, in the documented order."""
    op = view.operation
    data = {"type": COMMAND, "overall-status": OVERALL_STATUS[op.state]}
    if op.started_at is not None:  # a New run never started: RSA's "time the run started"
        data["start-time"] = _time(op.started_at)
    if op.completed_at is not None:
        data["completed-time"] = _time(op.completed_at)
    return data


def _time(value: datetime) -> str:
    return value.astimezone(UTC).strftime(TIME_FORMAT)
