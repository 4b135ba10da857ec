"""Targets and groups: ordinary CRUD under /v1."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from starlette.responses import Response

from opstatus import wire
from opstatus.api import convert, pages
from opstatus.domain.roles import Action
from opstatus.web import params, render
from opstatus.web.endpoint import Ctx, Router

_T = TypeVar("_T")

router = Router("targets")


@router.route(
    "POST", "/v1/targets", action=Action.MANAGE_TARGETS, body=wire.TargetIn,
    response=wire.TargetOut, **pages.CREATED, also=(200,),
)  # fmt: skip
async def put_target(ctx: Ctx) -> Response:
    """Register a target (201), or merge the name and labels given into the one that
    exists (200): labels merge key by key, what is not given is kept."""
    body: wire.TargetIn = ctx.body
    ops = ctx.api.operations
    target, new = await ops.put_target(ctx.tenant, body.id, body.name, body.labels)
    if new:
        return pages.created(
            ctx.request, convert.target(target), "targets", target.id, root="target"
        )
    return render.respond(ctx.request, convert.target(target), root="target")


@router.route(
    "GET", "/v1/targets", action=Action.READ, response=wire.TargetList, errors=(400,),
    params=pages.PAGE,
)  # fmt: skip
async def list_targets(ctx: Ctx) -> Response:
    """Targets by id."""
    store = ctx.api.operations.store
    items, next_cursor = await pages.read(
        ctx.request,
        lambda after, most: store.list_targets(ctx.tenant, after=after, limit=most),
        lambda t: t.id,
    )
    page = wire.TargetList(items=[convert.target(t) for t in items], next_cursor=next_cursor)
    return render.respond(ctx.request, page, root="targets")


@router.route(
    "GET", "/v1/targets/{id}", action=Action.READ, response=wire.TargetOut, errors=(404,),
)  # fmt: skip
async def get_target(ctx: Ctx) -> Response:
    """One target."""
    return await _one(ctx, ctx.api.operations.store.get_target, convert.target, "target")


@router.route(
    "POST", "/v1/groups", action=Action.MANAGE_TARGETS, body=wire.GroupIn,
    response=wire.GroupOut, **pages.CREATED,
)  # fmt: skip
async def put_group(ctx: Ctx) -> Response:
    """Create a group (or replace its name and members)."""
    body: wire.GroupIn = ctx.body
    group = await ctx.api.operations.put_group(ctx.tenant, body.id, body.targets, body.name)
    return pages.created(ctx.request, convert.group(group), "groups", group.id, root="group")


@router.route(
    "GET", "/v1/groups/{id}", action=Action.READ, response=wire.GroupOut, errors=(404,),
)  # fmt: skip
async def get_group(ctx: Ctx) -> Response:
    """One group with its members."""
    return await _one(ctx, ctx.api.operations.store.get_group, convert.group, "group")


async def _one(
    ctx: Ctx,
    read: Callable[[str, str], Awaitable[_T]],
    shape: Callable[[_T], Any],
    root: str,
) -> Response:
    """The resource ``read`` finds by the path's id in the caller's tenant, as ``shape``
    renders it (no query parameters taken)."""
    params.only(ctx.request, [])
    return render.respond(ctx.request, shape(await read(ctx.tenant, ctx.path("id"))), root=root)
