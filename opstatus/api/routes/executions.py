"""Executions and the agent side: read, report (PATCH), retry, and a target's inbox."""

from __future__ import annotations

import re
from collections.abc import Callable

from starlette.responses import Response

from opstatus import wire
from opstatus.api import convert, pages
from opstatus.domain import errors
from opstatus.domain.records import Execution, ExecutionUpdate, OperationQuery
from opstatus.domain.roles import Action, Role
from opstatus.domain.states import State
from opstatus.service import notifier
from opstatus.web import params, render
from opstatus.web.endpoint import Ctx, Param, Router, body_fields, fault

router = Router("executions")


def _etag(execution: Execution) -> dict[str, str]:
    return {"ETag": f'"{execution.version}"'}


def _answer(ctx: Ctx, execution: Execution) -> Response:
    """The execution as the answer, with its version as the ETag."""
    return render.respond(
        ctx.request, convert.execution(execution), headers=_etag(execution), root="execution"
    )


def _may(ctx: Ctx, action: Action) -> Callable[[Execution], None]:
    """The check that the caller may do ``action`` to an execution (agents only on
    their own targets), for the store to run on the execution it has locked."""
    return lambda execution: ctx.who.require(action, execution.target)


async def _own(ctx: Ctx, execution_id: str, action: Action) -> Execution:
    """The execution, if the caller may touch it: agents only on their own targets."""
    execution = await ctx.api.operations.get_execution(ctx.tenant, execution_id)
    ctx.who.require(action, execution.target)
    return execution


@router.route(
    "GET", "/v1/operations/{id}/executions", action=Action.READ,
    response=wire.ExecutionList, errors=(400, 404, 410), params=pages.PAGE,
)  # fmt: skip
async def list_executions(ctx: Ctx) -> Response:
    """The executions of one operation by target, a page at a time (``next_cursor``).

    A single read of a large operation embeds only its first executions
    (``executions_truncated``); this list pages through all of them.
    """
    op_id = ctx.path("id")

    async def fetch(after: str, limit: int) -> list[Execution]:
        return await ctx.api.operations.executions(ctx.tenant, op_id, after=after, limit=limit)

    items, next_cursor = await pages.read(ctx.request, fetch, lambda e: e.target)
    return render.respond(
        ctx.request,
        wire.ExecutionList(items=[convert.execution(e) for e in items], next_cursor=next_cursor),
        root="executions",
    )


# Before the /v1/executions/{id} routes: their 405 for other methods would take this path.
@router.route(
    "POST", "/v1/executions/reports", action=Action.REPORT, body=wire.ExecutionReportsIn,
    response=wire.ExecutionReportsOut, errors=(400, 403, 413, 415, 422),
)  # fmt: skip
async def report_executions(ctx: Ctx) -> Response:
    """Report on many executions at once: one transaction, one outcome per report.

    Each report is an execution ``id``, the fields of ``PATCH /v1/executions/{id}``
    and, optionally, ``version`` (that report's If-Match). Reports apply in the order
    sent (the same execution may come twice: the second sees the first) and each is
    checked as the PATCH would check it, an agent key reaching only its targets'
    executions. The answer is 200 with ``items``, one per report, in order: ``status``
    200 with the ``execution`` as stored, or the status and problem (``error``) the
    PATCH would have answered; a refused report changes nothing, and the others
    still apply. Each applied report has every effect of a PATCH: its events,
    wake-ups and webhooks. A body that is not valid as a whole (no ``reports``, none
    or more than 1000 of them, a report not valid) is refused whole with 422.
    """
    body: wire.ExecutionReportsIn = ctx.body
    for index, one in enumerate(body.reports):  # the whole body is not valid
        _reportable(one, f"reports[{index}].state")
    who = ctx.who
    reports: list[tuple[str, ExecutionUpdate]] = []
    refusals: list[errors.DomainError | None] = []
    for report in body.reports:
        version = None if report.version is None else int(report.version)
        try:
            expected, refusal = _expected(report, version), None
        except errors.PreconditionFailed as exc:
            expected, refusal = None, exc
        reports.append((report.id, _update(report, expected)))
        refusals.append(refusal)

    def admit(index: int, execution: Execution) -> None:
        # what the PATCH checks once it has found the execution, in its order
        who.require(Action.REPORT, execution.target)
        if (refusal := refusals[index]) is not None:
            raise refusal

    results = await ctx.api.operations.update_executions(ctx.tenant, reports, admit)
    items = [_outcome(report, result) for report, result in zip(body.reports, results, strict=True)]
    return render.respond(ctx.request, wire.ExecutionReportsOut(items=items), root="reports")


#: the PATCH body's fields: a plain Invalid about one of them is 422 ``invalid_body``
_REPORT_FIELDS = body_fields(wire.ExecutionUpdateIn)


def _outcome(
    report: wire.ExecutionReportIn, result: Execution | errors.DomainError
) -> wire.ExecutionReportOut:
    """How one report of a batch went, as the PATCH would have answered it."""
    if isinstance(result, Execution):
        return wire.ExecutionReportOut(
            id=report.id, status=200, execution=convert.execution(result)
        )
    if isinstance(result, errors.VersionMismatch) and report.version is not None:
        result = _precondition(result)
    problem, _ = fault(result, _REPORT_FIELDS, convert.execution)
    return wire.ExecutionReportOut(id=report.id, status=problem.status, error=problem)


@router.route(
    "GET", "/v1/executions/{id}", action=(Action.READ, Action.PULL), response=wire.ExecutionOut,
    errors=(403, 404, 410), headers=("ETag",),
)  # fmt: skip
async def get_execution(ctx: Ctx) -> Response:
    """One execution (agents: only their own targets')."""
    params.only(ctx.request, [])
    action = Action.PULL if ctx.who.role is Role.AGENT else Action.READ
    execution = await _own(ctx, ctx.path("id"), action)
    return render.respond(
        ctx.request, convert.execution(execution), headers=_etag(execution), root="execution"
    )


@router.route(
    "PATCH", "/v1/executions/{id}", action=Action.REPORT, body=wire.ExecutionUpdateIn,
    response=wire.ExecutionOut, errors=(400, 403, 404, 409, 410, 412, 413, 415, 422),
    params=(Param(name="If-Match", where="header", description="the version you read (ETag)",
                  schema={"type": "string", "pattern": '^(W/)?"*[0-9]{1,18}"*$'}),),
    headers=("ETag",),
)  # fmt: skip
async def update_execution(ctx: Ctx) -> Response:
    """Report state, progress, ETA, details, error or result (with expected_version)."""
    body: wire.ExecutionUpdateIn = ctx.body
    _reportable(body, "state")
    execution_id = ctx.path("id")
    if_match = ctx.request.headers.get("if-match")
    version = None
    if if_match is not None:
        raw = if_match.strip().removeprefix("W/").strip('"')
        if not re.fullmatch("[0-9]{1,18}", raw):
            raise errors.Invalid("If-Match must be a version ETag", parameter="If-Match")
        version = int(raw)
    update = _update(body, _expected(body, version))
    try:
        execution = await ctx.api.operations.update_execution(
            ctx.tenant, execution_id, update, admit=_may(ctx, Action.REPORT)
        )
    except errors.VersionMismatch as exc:
        if if_match is not None:
            raise _precondition(exc) from None
        raise
    return render.respond(
        ctx.request, convert.execution(execution), headers=_etag(execution), root="execution"
    )


def _reportable(body: wire.ExecutionUpdateIn, parameter: str) -> None:
    """Invalid (the body's fault, 422) for a report of ``dispatched``, before anything
    is looked up: only an inbox read dispatches, as the body's schema says too."""
    if body.state is State.DISPATCHED:
        raise errors.Invalid(
            "state dispatched is set by reading the inbox; report acknowledged, "
            "in_progress or a final state",
            parameter=parameter,
        )


def _expected(body: wire.ExecutionUpdateIn, version: int | None) -> int | None:
    """The version a report expects: its ``expected_version``, or ``version`` (its
    If-Match); PreconditionFailed when both are given and disagree."""
    expected = None if body.expected_version is None else int(body.expected_version)
    if version is not None and expected is not None and version != expected:
        # At most one of the two can name the current version: a failed precondition.
        raise errors.PreconditionFailed(
            "If-Match and expected_version disagree", parameter="expected_version"
        )
    return expected if version is None else version


def _update(body: wire.ExecutionUpdateIn, expected: int | None) -> ExecutionUpdate:
    """The report a body makes, expecting version ``expected``."""
    return ExecutionUpdate(
        state=body.state, progress=body.progress, eta=body.eta, details=body.details,
        error=body.error, result=body.result, reason=body.reason, expected_version=expected,
    )  # fmt: skip


def _precondition(exc: errors.VersionMismatch) -> errors.PreconditionFailed:
    """A version mismatch of a report that named its version in If-Match: 412."""
    return errors.PreconditionFailed(exc.detail, **exc.context)


@router.route(
    "POST", "/v1/executions/{id}/retry", action=Action.CANCEL, response=wire.ExecutionOut,
    errors=(403, 404, 409, 410),
)  # fmt: skip
async def retry_execution(ctx: Ctx) -> Response:
    """Queue a failed or timed-out execution again."""
    return _answer(ctx, await ctx.api.operations.retry_execution(ctx.tenant, ctx.path("id")))


@router.route(
    "POST", "/v1/executions/{id}/release", action=Action.REPORT, response=wire.ExecutionOut,
    errors=(403, 404, 409, 410),
)  # fmt: skip
async def release_execution(ctx: Ctx) -> Response:
    """Give work back unfinished (its agent is stopping): queued again for any agent of
    the target, without spending an attempt. 409 unless a target holds it (dispatched,
    acknowledged or in progress)."""
    await _own(ctx, ctx.path("id"), Action.REPORT)
    return _answer(ctx, await ctx.api.operations.release_execution(ctx.tenant, ctx.path("id")))


async def _known_target(ctx: Ctx, target: str) -> None:
    """NotFound for a target the tenant never registered nor aimed work at.

    Target ids are per tenant, so another tenant's target must answer 404 here as
    on ``GET /v1/targets/{id}`` (docs/architecture.md, Security), not an empty inbox of
    the same name.
    """
    ops = ctx.api.operations
    try:
        await ops.store.get_target(ctx.tenant, target)
    except errors.NotFound:
        aimed = await ops.find(ctx.tenant, OperationQuery(targets=[target], limit=1))
        if not aimed.items:
            raise errors.NotFound(f"no target {target!r}") from None


@router.route(
    "GET", "/v1/targets/{id}/inbox", action=Action.PULL, response=wire.InboxOut,
    errors=(400, 403, 404),
    params=(
        Param(name="wait", schema={"type": "number", "minimum": 0, "maximum": 60},
              description="long-poll: wait up to this many seconds for work"),
        Param(name="limit", schema={"type": "integer", "minimum": 1, "maximum": 100}),
        Param(name="peek", schema={"type": "boolean"},
              description="true: show held and queued work, dispatch nothing; default: "
                          "false for agent keys, true for every other credential"),
    ),
)  # fmt: skip
async def inbox(ctx: Ctx) -> Response:
    """Work for a target: delivered (dispatched, leased) until acknowledged.

    Looking is not claiming. An agent key's read claims: queued work is dispatched to
    the target and leased, and repeat reads return the same work until it is
    acknowledged. Any other credential (admin, operator) only peeks unless it asks
    to claim with ``peek=false`` (an agent run with such a key). A peek lists the
    work the target holds, then its queued work in the order a claim takes it, and
    changes nothing.
    """
    r = ctx.request
    params.only(r, ["wait", "limit", "peek"])
    target = ctx.path("id")
    ctx.who.require(Action.PULL, target)
    ops = ctx.api.operations
    if ctx.who.role is not Role.AGENT:  # an agent's key binding already names its targets
        await _known_target(ctx, target)
    peek = params.boolean(r, "peek")
    if peek is None:
        peek = ctx.who.role is not Role.AGENT
    read = ops.peek_inbox if peek else ops.claim_inbox
    wait = params.number(r, "wait", high=ctx.api.max_wait)
    limit = params.integer(r, "limit", 10, low=1, high=ops.limits.max_claim) or 10
    if wait:
        ctx.api.waits.take()
    waiter = ctx.api.notifier.subscribe(notifier.inbox_key(ctx.tenant, target))
    try:
        items = await read(ctx.tenant, target, limit)
        woke = not items and wait and await ctx.watch().wait(waiter, wait) is not None
        if woke and not ctx.api.notifier.closing:  # shutting down: an empty page, no lease
            items = await read(ctx.tenant, target, limit)
    finally:
        waiter.cancel()
        if wait:
            ctx.api.waits.give()
    return render.respond(
        r, wire.InboxOut(items=[convert.inbox_item(i) for i in items]), root="inbox"
    )
