"""``/v1/testing/*``: faults, scenarios, the clock, reset and the journal.

Mounted only by ``opstatus serve --testing`` (without it every path here answers 404);
admin keys only (the ``manage_keys`` action), every call scoped to the caller's tenant.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec
from starlette.responses import Response

from opstatus.domain.roles import Action
from opstatus.testing.faults import Fault, FaultRequest
from opstatus.testing.journal import Entry
from opstatus.testing.lab import Lab
from opstatus.testing.scenarios import BUILT_IN, Profile, ScenarioIn
from opstatus.web import params, render
from opstatus.web.endpoint import Ctx, Param, Router

router = Router("testing")
ADMIN = Action.MANAGE_KEYS  #: only admin keys may steer the stand-in
_BODY_ERRORS = (400, 413, 415, 422)


class FaultList(msgspec.Struct):
    """The caller's live fault rules, in matching order."""

    items: list[Fault]


class Scenario(msgspec.Struct):
    """A profile by name, and whether every tenant has it."""

    name: str
    built_in: bool
    profile: Profile


class ScenarioList(msgspec.Struct):
    """Every profile a target's ``scenario`` label may name."""

    items: list[Scenario]


class ClockIn(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /v1/testing/clock``: seconds to move the service's clock forward."""

    advance: Annotated[float, msgspec.Meta(ge=0, le=10 * 365 * 86400)]


class ClockOut(msgspec.Struct):
    """The service's clock: now, and how far ahead of the wall clock it runs."""

    now: datetime
    offset: float  #: seconds


class RequestList(msgspec.Struct):
    """Recent requests, newest first."""

    items: list[Entry]


def _lab(ctx: Ctx) -> Lab:
    lab: Lab = ctx.request.app.state.lab
    return lab


@router.route(
    "POST", "/v1/testing/faults", action=ADMIN, body=FaultRequest, response=Fault, status=201,
    errors=_BODY_ERRORS,
)  # fmt: skip
async def create_fault(ctx: Ctx) -> Response:
    """Make a fault rule: matching requests get its injected answer."""
    fault = _lab(ctx).faults.add(ctx.tenant, ctx.body)
    return render.respond(ctx.request, fault, status=201, root="fault")


@router.route("GET", "/v1/testing/faults", action=ADMIN, response=FaultList)
async def list_faults(ctx: Ctx) -> Response:
    """The tenant's live fault rules."""
    params.only(ctx.request, [])
    return render.respond(ctx.request, FaultList(_lab(ctx).faults.live(ctx.tenant)), root="faults")


@router.route("DELETE", "/v1/testing/faults/{id}", action=ADMIN, status=204, errors=(404,))
async def delete_fault(ctx: Ctx) -> Response:
    """Remove a fault rule."""
    _lab(ctx).faults.delete(ctx.tenant, ctx.path("id"))
    return Response(status_code=204)


@router.route(
    "POST", "/v1/testing/scenarios", action=ADMIN, body=ScenarioIn, response=Scenario,
    status=201, errors=(*_BODY_ERRORS, 409),
)  # fmt: skip
async def put_scenario(ctx: Ctx) -> Response:
    """Make or replace a custom scenario profile of the tenant."""
    body: ScenarioIn = ctx.body
    fields = msgspec.structs.asdict(body)
    name = fields.pop("name")
    profile = Profile(**fields)
    _lab(ctx).scenarios.put(ctx.tenant, name, profile)
    return render.respond(
        ctx.request, Scenario(name=name, built_in=False, profile=profile), status=201
    )


@router.route("GET", "/v1/testing/scenarios", action=ADMIN, response=ScenarioList)
async def list_scenarios(ctx: Ctx) -> Response:
    """Every profile the tenant's targets may name in their ``scenario`` label."""
    params.only(ctx.request, [])
    lab = _lab(ctx)
    items = [
        Scenario(name=name, built_in=name in BUILT_IN, profile=profile)
        for name, profile in lab.scenarios.all(ctx.tenant).items()
    ]
    return render.respond(ctx.request, ScenarioList(items), root="scenarios")


@router.route("GET", "/v1/testing/clock", action=ADMIN, response=ClockOut)
async def read_clock(ctx: Ctx) -> Response:
    """The service's clock."""
    params.only(ctx.request, [])
    return render.respond(ctx.request, _clock(_lab(ctx)), root="clock")


@router.route(
    "POST", "/v1/testing/clock", action=ADMIN, body=ClockIn, response=ClockOut,
    errors=_BODY_ERRORS,
)  # fmt: skip
async def advance_clock(ctx: Ctx) -> Response:
    """Move the server's clock forward: every deadline passed meanwhile fires at once.

    The clock is the whole server's (it cannot be one tenant's: deadlines are swept
    across tenants), and it only moves forward.
    """
    body: ClockIn = ctx.body
    lab = _lab(ctx)
    lab.clock.advance(body.advance)
    return render.respond(ctx.request, _clock(lab), root="clock")


@router.route("POST", "/v1/testing/reset", action=ADMIN, status=204)
async def reset(ctx: Ctx) -> Response:
    """Wipe the tenant's operations, executions, events, targets, groups, webhooks, fault
    rules, journal and custom profiles; its keys stay."""
    await _lab(ctx).reset(ctx.api.operations, ctx.tenant)
    return Response(status_code=204)


@router.route(
    "GET", "/v1/testing/requests", action=ADMIN, response=RequestList,
    params=(
        Param(name="path", description="a glob on the path, e.g. /v1/videoMesh/*"),
        Param(name="method"),
        Param(name="limit", schema={"type": "integer", "minimum": 1, "maximum": 1000}),
    ),
)  # fmt: skip
async def list_requests(ctx: Ctx) -> Response:
    """The tenant's recent requests, newest first (``path`` a glob, ``method``, ``limit``)."""
    request = ctx.request
    params.only(request, ["path", "method", "limit"])
    found = _lab(ctx).journal.find(
        ctx.tenant,
        path=params.text(request, "path"),
        method=params.text(request, "method"),
        limit=params.integer(request, "limit", 100, low=1, high=1000) or 100,
    )
    return render.respond(ctx.request, RequestList(found), root="requests")


def _clock(lab: Lab) -> ClockOut:
    return ClockOut(now=lab.clock(), offset=lab.clock.offset.total_seconds())


ENDPOINTS = router.endpoints
