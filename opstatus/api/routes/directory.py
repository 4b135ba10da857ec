"""Targets and groups: ordinary CRUD under /v1."""

from __future__ import annotations

from urllib.parse import quote

from starlette.responses import Response

from opstatus import wire
from opstatus.api import convert
from opstatus.domain.roles import Action
from opstatus.web import params, render
from opstatus.web.endpoint import Ctx, Param, Router

router = Router("targets")


@router.route(
    "POST", "/v1/targets", action=Action.MANAGE_TARGETS, body=wire.TargetIn,
    response=wire.TargetOut, status=201, errors=(400, 413, 415, 422), headers=("Location",),
)  # fmt: skip
async def put_target(ctx: Ctx) -> Response:
    """Register a target (or update its name and labels)."""
    body: wire.TargetIn = ctx.body
    target = await ctx.api.operations.put_target(ctx.tenant, body.id, body.name, body.labels)
    return render.respond(
        ctx.request,
        convert.target(target),
        status=201,
        headers={"Location": f"/v1/targets/{quote(target.id, safe='')}"},
        root="target",
    )


@router.route(
    "GET", "/v1/targets", action=Action.READ, response=wire.TargetList, errors=(400,),
    params=(
        Param(name="limit", schema={"type": "integer", "minimum": 1, "maximum": 1000}),
        Param(name="cursor", description="next_cursor of the previous page",
              schema={"type": "string", "maxLength": 200}),
    ),
)  # fmt: skip
async def list_targets(ctx: Ctx) -> Response:
    """Targets by id."""
    r = ctx.request
    params.only(r, ["limit", "cursor"])
    limit = params.integer(r, "limit", 100, low=1, high=1000) or 100
    found = await ctx.api.operations.store.list_targets(
        ctx.tenant, after=params.text(r, "cursor") or "", limit=limit + 1
    )
    more = len(found) > limit
    found = found[:limit]
    return render.respond(
        r,
        wire.TargetList(
            items=[convert.target(t) for t in found],
            next_cursor=found[-1].id if more and found else None,
        ),
        root="targets",
    )


@router.route(
    "GET", "/v1/targets/{id}", action=Action.READ, response=wire.TargetOut, errors=(404,),
)  # fmt: skip
async def get_target(ctx: Ctx) -> Response:
    """One target."""
    params.only(ctx.request, [])
    target = await ctx.api.operations.store.get_target(ctx.tenant, ctx.path("id"))
    return render.respond(ctx.request, convert.target(target), root="target")


@router.route(
    "POST", "/v1/groups", action=Action.MANAGE_TARGETS, body=wire.GroupIn,
    response=wire.GroupOut, status=201, errors=(400, 413, 415, 422), headers=("Location",),
)  # fmt: skip
async def put_group(ctx: Ctx) -> Response:
    """Create a group (or replace its name and members)."""
    body: wire.GroupIn = ctx.body
    group = await ctx.api.operations.put_group(ctx.tenant, body.id, body.targets, body.name)
    return render.respond(
        ctx.request,
        convert.group(group),
        status=201,
        headers={"Location": f"/v1/groups/{quote(group.id, safe='')}"},
        root="group",
    )


@router.route(
    "GET", "/v1/groups/{id}", action=Action.READ, response=wire.GroupOut, errors=(404,),
)  # fmt: skip
async def get_group(ctx: Ctx) -> Response:
    """One group with its members."""
    params.only(ctx.request, [])
    group = await ctx.api.operations.store.get_group(ctx.tenant, ctx.path("id"))
    return render.respond(ctx.request, convert.group(group), root="group")
