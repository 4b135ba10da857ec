"""``/v1/operations``: trigger, list, read (long-poll, ETag), cancel, delete."""

from __future__ import annotations

import math
import re

from starlette.responses import Response

from opstatus import wire
from opstatus.api import convert
from opstatus.domain import errors
from opstatus.domain.records import OperationQuery, Rollout, Timeouts
from opstatus.domain.roles import Action
from opstatus.domain.states import OperationState
from opstatus.service import notifier
from opstatus.service.operations import OperationView
from opstatus.service.requests import CreateOperation
from opstatus.web import params, render
from opstatus.web.endpoint import Ctx, Param, Router
from opstatus.web.reads import Ticket

router = Router("operations")
_IDEMPOTENCY = Param(
    name="Idempotency-Key",
    where="header",
    schema={"type": "string", "minLength": 1, "maxLength": 200},
    description="same key and body: the same operation; same key, other body: 422",
)
_WAIT = (
    Param(name="wait", schema={"type": "number", "minimum": 0, "maximum": 60},
          description="long-poll: wait up to this many seconds for a change"),
    Param(name="version", schema={"type": "integer", "minimum": 0, "maximum": 2**62},
          description="with wait: return as soon as the version differs from this"),
)  # fmt: skip
# Exactly the cursors next_cursor gives (base64url of "n:" and 1-18 digits, unpadded; empty
# for none), so a client knows one from a typo and no number too large for the database
# gets through.
_DIGIT_PAIR = "(?:[MN][DTjz]|O[DT])[AEIMQUYcgk]"  #: two digits, and two bits of a third
_CURSOR = f"^(?:bjo[w-z0-5](?:{_DIGIT_PAIR}[w-z0-5]){{0,5}}(?:[MN][AQgw]|O[AQ]|{_DIGIT_PAIR})?)?$"
#: an operation's per-tenant number where an id is expected (ids start with a letter)
_NUMBER = re.compile(r"#?([0-9]{1,18})")
_LIST_PARAMS = (
    Param(name="id", description="operation ids, comma-separated (at most 1000)",
          schema={"type": "string", "pattern": params.csv_pattern()}),
    Param(name="target", description="target ids, comma-separated (at most 1000)",
          schema={"type": "string", "pattern": params.csv_pattern()}),
    Param(name="group", description="group ids the operation was aimed at (any of them), "
          "comma-separated (at most 1000)",
          schema={"type": "string", "pattern": params.csv_pattern()}),
    Param(name="state", description="operation states, comma-separated",
          schema={"type": "string", "pattern": params.csv_pattern(list(OperationState))}),
    Param(name="kind", description="kinds, comma-separated (at most 1000)",
          schema={"type": "string", "pattern": params.csv_pattern()}),
    Param(name="internal", schema={"type": "boolean"}),
    Param(name="created_after", schema={"type": "string", "format": "date-time"}),
    Param(name="created_before", schema={"type": "string", "format": "date-time"}),
    Param(name="limit", schema={"type": "integer", "minimum": 1, "maximum": 1000}),
    Param(name="offset", schema={"type": "integer", "minimum": 0, "maximum": 1000000}),
    Param(name="cursor", description="next_cursor of the previous page",
          schema={"type": "string", "pattern": _CURSOR}),
)  # fmt: skip


def etag(version: int) -> str:
    """The ETag of a resource version."""
    return f'"{version}"'


def _if_none_match(ctx: Ctx) -> int | None:
    return params.etag_version(ctx.request.headers.get("if-none-match", ""))


def _render_one(ctx: Ctx, view: OperationView, status: int = 200) -> Response:
    now = ctx.api.operations.clock()
    return render.respond(
        ctx.request,
        convert.operation(view, now),
        status=status,
        headers={"ETag": etag(view.operation.version)},
        root="operation",
    )


@router.route(
    "POST", "/v1/operations", action=Action.TRIGGER, body=wire.CreateOperationIn,
    response=wire.OperationOut, status=202, errors=(400, 403, 404, 409, 413, 415, 422, 423),
    params=(_IDEMPOTENCY,), headers=("Location", "Retry-After"),
)  # fmt: skip
async def create_operation(ctx: Ctx) -> Response:
    """Trigger an operation on targets and/or groups.

    Every target (named, or a member of a named group) must be registered: unknown ones
    answer 422 ``unknown_targets`` listing them all in ``unknown_targets``, and nothing
    is created. ``"register_targets": true`` (a role that may manage targets) registers
    them instead, as does the server setting ``OPSTATUS_REGISTER_TARGETS=1`` for every
    create.
    """
    body: wire.CreateOperationIn = ctx.body
    key = ctx.request.headers.get("idempotency-key")
    if key is not None and not 1 <= len(key) <= 200:
        raise errors.Invalid(
            "Idempotency-Key must be 1 to 200 characters", parameter="Idempotency-Key"
        )
    if body.register_targets:
        ctx.who.require(Action.MANAGE_TARGETS)
    request = CreateOperation(
        kind=body.kind, targets=body.targets, groups=body.groups, parameters=body.parameters,
        internal=body.internal, schedule_at=body.schedule_at,
        timeouts=Timeouts(
            queue=body.timeouts.queue, lease=body.timeouts.lease, run=body.timeouts.run,
            heartbeat=body.timeouts.heartbeat,
        ),
        retries=int(body.retries), exclusive=body.exclusive, idempotency_key=key,
        rollout=Rollout(
            max_per_minute=_whole(body.rollout.max_per_minute),
            abort_after_failures=_whole(body.rollout.abort_after_failures),
        ),
        register_targets=body.register_targets,
    )  # fmt: skip
    try:
        view, _ = await ctx.api.operations.create(ctx.tenant, request)
    except errors.Locked as exc:
        exc.context.setdefault("retry_after", await _retry_after(ctx, body.kind))
        raise
    response = _render_one(ctx, view, status=202)
    response.headers["Location"] = f"/v1/operations/{view.operation.id}"
    response.headers["Retry-After"] = str(await _retry_after(ctx, body.kind))
    return response


def _whole(value: float | None) -> int | None:
    return None if value is None else int(value)


async def _retry_after(ctx: Ctx, kind: str) -> int:
    """A poll interval from the kind's recent pace: a quarter of its median run, 1-60 s."""
    typical = await ctx.api.operations.typical_duration(ctx.tenant, kind)
    if typical is None:
        return 1
    return max(1, min(60, math.ceil(typical / 4)))


@router.route(
    "GET", "/v1/operations", action=Action.READ, response=wire.OperationList,
    errors=(400, 504), params=_LIST_PARAMS,
)  # fmt: skip
async def list_operations(ctx: Ctx) -> Response:
    """List operations, newest first, with filters and paging."""
    r = ctx.request
    params.only(r, [p.name for p in _LIST_PARAMS])
    query = OperationQuery(
        ids=params.csv(r, "id"),
        targets=params.csv(r, "target"),
        groups=params.csv(r, "group"),
        states=params.enums(r, "state", OperationState),
        kinds=params.csv(r, "kind"),
        internal=params.boolean(r, "internal"),
        created_after=params.timestamp(r, "created_after"),
        created_before=params.timestamp(r, "created_before"),
        limit=params.integer(r, "limit", 50, low=1, high=ctx.api.operations.limits.max_page) or 50,
        offset=params.integer(r, "offset", 0, high=1_000_000) or 0,
    )
    cursor = params.text(r, "cursor")
    if cursor is not None and not re.fullmatch(_CURSOR, cursor):
        raise errors.Invalid("cursor is not valid", parameter="cursor")
    page = await ctx.api.operations.find(ctx.tenant, query, cursor)
    now = ctx.api.operations.clock()
    return render.respond(
        r,
        wire.OperationList(
            items=[convert.operation(v, now) for v in page.items], next_cursor=page.next_cursor
        ),
        root="operations",
    )


@router.route(
    "GET", "/v1/operations/latest", action=Action.READ, response=wire.OperationOut,
    errors=(404, 410),
)  # fmt: skip
async def latest_operation(ctx: Ctx) -> Response:
    """The tenant's most recent operation."""
    params.only(ctx.request, [])
    return _render_one(ctx, await ctx.api.operations.latest(ctx.tenant))


_AS_OF = Param(
    name="as_of", schema={"type": "string", "format": "date-time"},
    description="the operation as it was at this moment (RFC 3339), rebuilt from its event "
    "log: state, counts, progress and each execution's state, progress, version and "
    "attempt then; details and results only where they have not changed since. 400 for a "
    "moment before the creation, in the future, older than the retained log, or with wait",
)  # fmt: skip


@router.route(
    "GET", "/v1/operations/{id}", action=Action.READ, response=wire.OperationOut,
    errors=(400, 404, 410),
    params=(*_WAIT, _AS_OF, Param(name="If-None-Match", where="header")),
    headers=("ETag",),
)  # fmt: skip
async def get_operation(ctx: Ctx) -> Response:
    """One operation with its executions; long-poll with ``wait``; 304 on a matching ETag;
    as it was at a past moment with ``as_of``.

    The id may also be the operation's per-tenant number, as lists show it: ``16`` or
    ``#16``.
    """
    r = ctx.request
    params.only(r, ["wait", "version", "as_of"])
    ops, op_id = ctx.api.operations, ctx.path("id")
    if number := _NUMBER.fullmatch(op_id):
        op_id = (await ops.get_by_number(ctx.tenant, int(number[1]))).operation.id
    moment = params.timestamp(r, "as_of")
    if moment is not None:
        if r.query_params.get("wait") or r.query_params.get("version"):
            raise errors.Invalid("as_of cannot be combined with wait or version", parameter="as_of")
        return _render_one(ctx, await ops.as_of(ctx.tenant, op_id, moment))
    wait = params.number(r, "wait", high=ctx.api.max_wait)
    ticket = None
    known = params.integer(r, "version", None)
    if known is None:
        known = _if_none_match(ctx)
    if wait:
        ctx.api.waits.take()
        waiter = ctx.api.notifier.subscribe(notifier.operation_key(ctx.tenant, op_id))
        try:
            view = await ops.get(ctx.tenant, op_id)
            if known is None:
                known = view.operation.version
            if view.operation.version == known and not view.operation.state.terminal:
                woke = await ctx.watch().wait(waiter, wait)
                if woke is not None:  # every long-poll this change woke shares one read
                    view = await woke.share("view", lambda: ops.get(ctx.tenant, op_id))
        finally:
            waiter.cancel()
            ctx.api.waits.give()
    else:
        ticket = _ticket(ctx)  # taken before the read: a change during it voids the fill
        view = await ops.get(ctx.tenant, op_id)
    if _if_none_match(ctx) == view.operation.version:
        return Response(status_code=304, headers={"ETag": etag(view.operation.version)})
    response = await render.respond_large(
        r,
        convert.operation(view, ops.clock()),
        size=len(view.targets) + len(view.executions or ()),
        headers={"ETag": etag(view.operation.version)},
        root="operation",
    )
    if ticket is not None and view.operation.id == op_id:  # a plain read (no wait)
        _keep(ctx, ticket, view, response)
    return response


def _ticket(ctx: Ctx) -> Ticket | None:
    """A fill ticket of the fast read path (web/reads.py) for a plain JSON read: no query,
    an Accept that picks JSON."""
    reads, request = ctx.api.reads, ctx.request
    if reads is None or request.scope["query_string"] or render.negotiate(request) != render.JSON:
        return None
    return reads.ticket()


def _keep(ctx: Ctx, ticket: Ticket, view: OperationView, response: Response) -> None:
    """Keep the encoded body for the fast path to answer the next reads with."""
    assert ctx.api.reads is not None  # a ticket comes only from a cache
    op = view.operation
    key = notifier.operation_key(ctx.tenant, op.id)
    ctx.api.reads.put(ticket, key, op.version, etag(op.version), bytes(response.body))


@router.route(
    "POST", "/v1/operations/{id}/cancel", action=Action.CANCEL, body=wire.CancelIn,
    body_required=False, response=wire.OperationOut, errors=(404, 409, 410, 413, 415, 422),
)  # fmt: skip
async def cancel_operation(ctx: Ctx) -> Response:
    """Cancel queued work at once; running work only with ``force``."""
    body: wire.CancelIn = ctx.body or wire.CancelIn()
    view = await ctx.api.operations.cancel(
        ctx.tenant, ctx.path("id"), force=body.force, reason=body.reason
    )
    return _render_one(ctx, view)


@router.route(
    "DELETE", "/v1/operations/{id}", action=Action.CANCEL, status=204, errors=(404, 409, 410),
)  # fmt: skip
async def delete_operation(ctx: Ctx) -> Response:
    """Delete a finished operation; later reads answer 410 Gone."""
    await ctx.api.operations.delete(ctx.tenant, ctx.path("id"))
    return Response(status_code=204)
