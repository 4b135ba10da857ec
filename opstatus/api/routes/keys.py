"""API keys (admin) and short-lived bearer tokens (any credential)."""

from __future__ import annotations

from starlette.responses import Response

from opstatus import wire
from opstatus.api import convert
from opstatus.domain import errors
from opstatus.domain.roles import Action
from opstatus.web import params, render
from opstatus.web.endpoint import Ctx, Router

router = Router("auth")


@router.route(
    "POST", "/v1/keys", action=Action.MANAGE_KEYS, body=wire.KeyIn,
    response=wire.KeyCreatedOut, status=201, errors=(400, 413, 415, 422),
)  # fmt: skip
async def create_key(ctx: Ctx) -> Response:
    """Make a key in the caller's tenant; its secret is shown in this answer only."""
    body: wire.KeyIn = ctx.body
    key, secret = await ctx.api.credentials.create_key(
        ctx.tenant, body.role, name=body.name, targets=body.targets
    )
    return render.respond(
        ctx.request,
        convert.created_key(key, secret),
        status=201,
        headers={"Cache-Control": "no-store"},
        root="key",
    )


@router.route("GET", "/v1/keys", action=Action.MANAGE_KEYS, response=wire.KeyList)
async def list_keys(ctx: Ctx) -> Response:
    """Every key of the tenant, revoked ones too (never a secret)."""
    params.only(ctx.request, [])
    keys = await ctx.api.credentials.list_keys(ctx.tenant)
    return render.respond(
        ctx.request, wire.KeyList(items=[convert.key(k) for k in keys]), root="keys"
    )


@router.route(
    "DELETE", "/v1/keys/{id}", action=Action.MANAGE_KEYS, response=wire.KeyOut,
    errors=(404, 409),
)  # fmt: skip
async def revoke_key(ctx: Ctx) -> Response:
    """Revoke a key and its tokens, at once."""
    if ctx.path("id") == ctx.who.key_id:
        raise errors.Conflict("a key cannot revoke itself; use another admin key")
    key = await ctx.api.credentials.revoke_key(ctx.tenant, ctx.path("id"))
    return render.respond(ctx.request, convert.key(key), root="key")


@router.route(
    "POST", "/v1/auth/token", action=tuple(Action), public=True, body=wire.TokenIn,
    body_required=False, response=wire.TokenOut, errors=(400, 401, 403, 413, 415, 422),
)  # fmt: skip
async def issue_token(ctx: Ctx) -> Response:
    """Exchange a key (Basic, X-API-Key, Bearer, or ``{"key": secret}``) for a bearer token.

    A token cannot be exchanged for another (403), so a token's lifetime bounds it.
    """
    body: wire.TokenIn | None = ctx.body
    if body is not None:
        principal = await ctx.api.credentials.by_secret(body.key)
    else:
        principal = ctx.who
    token, expires_in = await ctx.api.credentials.issue_token(principal)
    return render.respond(
        ctx.request,
        wire.TokenOut(access_token=token, token_type="Bearer", expires_in=expires_in),
        headers={"Cache-Control": "no-store"},
        root="token",
    )
