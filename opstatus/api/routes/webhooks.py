"""Webhooks (admin): subscriptions, their delivery log, replays (docs/architecture.md#webhooks).

Receivers get each event as the canonical event JSON (:func:`event_body`), signed
``Opstatus-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Annotated

import msgspec
from msgspec import Meta, Struct
from starlette.responses import Response

from opstatus import wire
from opstatus.api import convert, pages
from opstatus.domain import errors
from opstatus.domain import webhooks as hooks
from opstatus.domain.records import Event
from opstatus.domain.roles import Action
from opstatus.service.delivery import MAX_URL
from opstatus.service.webhooks import Webhooks
from opstatus.web import params, render
from opstatus.web.endpoint import Ctx, Param, Router

router = Router("webhooks")
#: delivery ids and cursors: log numbers
_NUMBER = re.compile(r"[0-9]{1,18}")

EventPattern = Annotated[
    str,
    Meta(
        pattern="^(?:" + "|".join(re.escape(p) for p in hooks.EVENT_PATTERNS) + ")$",
        description="'*', 'operation.*', 'execution.*' or one event type",
    ),
]
WebhookUrl = Annotated[
    str,
    Meta(
        min_length=8,
        max_length=MAX_URL,
        pattern="^[Hh][Tt][Tt][Pp][Ss]?://",
        description="http(s) URL; it must resolve to public addresses only, unless the "
        "server runs with OPSTATUS_WEBHOOK_ALLOW_PRIVATE=1 (else 422)",
    ),
]


class WebhookIn(Struct, forbid_unknown_fields=True, kw_only=True):
    """``POST /v1/webhooks``."""

    url: WebhookUrl
    events: Annotated[list[EventPattern], Meta(min_length=1, max_length=64)] = msgspec.field(
        default_factory=lambda: ["*"]
    )


def event_body(event: Event) -> bytes:
    """What a receiver gets: the canonical event JSON (as ``GET /v1/events`` has it)."""
    return msgspec.json.encode(convert.event(event))


def _webhook(w: hooks.Webhook) -> wire.WebhookOut:
    return wire.WebhookOut(
        id=w.id, url=w.url, events=list(w.events), created_at=w.created_at, cursor=w.cursor,
        attempts=w.attempts, next_attempt_at=w.next_attempt_at,
    )  # fmt: skip


def _delivery(d: hooks.Delivery) -> wire.DeliveryOut:
    return wire.DeliveryOut(
        id=str(d.number), webhook_id=d.webhook_id, seq=d.seq, type=d.type, attempt=d.attempt,
        status=d.status, status_code=d.status_code, error=d.error,
        replay_of=None if d.replay_of is None else str(d.replay_of),
        next_attempt_at=d.next_attempt_at, created_at=d.created_at,
        delivered_at=d.delivered_at,
    )  # fmt: skip


def _service(ctx: Ctx) -> Webhooks:
    service = ctx.api.webhooks
    if service is None:
        raise errors.NotFound("webhooks are not available on this server")
    return service


async def _one(ctx: Ctx, use: Callable[[Webhooks, str, str], Awaitable[hooks.Webhook]]) -> Response:
    """The subscription the path names, after ``use(service, tenant, id)``."""
    params.only(ctx.request, [])
    webhook = await use(_service(ctx), ctx.tenant, ctx.path("id"))
    return render.respond(ctx.request, _webhook(webhook), root="webhook")


@router.route(
    "POST", "/v1/webhooks", action=Action.MANAGE_KEYS, body=WebhookIn,
    response=wire.WebhookCreatedOut, **pages.CREATED,
)  # fmt: skip
async def create_webhook(ctx: Ctx) -> Response:
    """Subscribe a URL to events; the signing secret is shown in this answer only.

    The URL must resolve to public addresses only (checked again before every
    delivery), unless the server runs with OPSTATUS_WEBHOOK_ALLOW_PRIVATE=1.
    Only events recorded after this call are delivered.
    """
    body: WebhookIn = ctx.body
    webhook, secret = await _service(ctx).create(ctx.tenant, body.url, body.events)
    created = wire.WebhookCreatedOut(**msgspec.structs.asdict(_webhook(webhook)), secret=secret)
    return pages.created(ctx.request, created, "webhooks", webhook.id, root="webhook", secret=True)


@router.route(
    "GET", "/v1/webhooks", action=Action.MANAGE_KEYS, response=wire.WebhookList, errors=(400,),
    params=pages.PAGE,
)  # fmt: skip
async def list_webhooks(ctx: Ctx) -> Response:
    """The tenant's subscriptions by id (never a secret)."""
    items, next_cursor = await pages.read(
        ctx.request,
        lambda after, most: _service(ctx).find(ctx.tenant, after=after, limit=most),
        lambda w: w.id,
    )
    page = wire.WebhookList(items=[_webhook(w) for w in items], next_cursor=next_cursor)
    return render.respond(ctx.request, page, root="webhooks")


@router.route(
    "GET", "/v1/webhooks/{id}", action=Action.MANAGE_KEYS, response=wire.WebhookOut, errors=(404,),
)  # fmt: skip
async def get_webhook(ctx: Ctx) -> Response:
    """One subscription and how far its deliveries got."""
    return await _one(ctx, Webhooks.get)


@router.route(
    "DELETE", "/v1/webhooks/{id}", action=Action.MANAGE_KEYS, response=wire.WebhookOut,
    errors=(404,),
)  # fmt: skip
async def delete_webhook(ctx: Ctx) -> Response:
    """Unsubscribe: deliveries stop, and the delivery log is deleted with it."""
    return await _one(ctx, Webhooks.delete)


@router.route(
    "GET", "/v1/webhooks/{id}/deliveries", action=Action.MANAGE_KEYS, response=wire.DeliveryList,
    errors=(400, 404),
    params=(
        pages.LIMIT,
        Param(name="cursor", description="next_cursor of the previous page",
              schema={"type": "string", "pattern": "^[0-9]{1,18}$"}),
    ),
)  # fmt: skip
async def list_deliveries(ctx: Ctx) -> Response:
    """The delivery log, newest first: every attempt, its answer, and what happens next."""
    r = ctx.request
    params.only(r, ["limit", "cursor"])
    limit = pages.limit(r)
    raw = params.text(r, "cursor")
    before: int | None = None
    if raw is not None:
        if not _NUMBER.fullmatch(raw):
            raise errors.Invalid(
                "query parameter 'cursor' must be a next_cursor", parameter="cursor"
            )
        before = int(raw)
    found = await _service(ctx).deliveries(
        ctx.tenant, ctx.path("id"), before=before, limit=limit + 1
    )
    items, next_cursor = pages.cut(found, limit, lambda d: str(d.number))
    page = wire.DeliveryList(items=[_delivery(d) for d in items], next_cursor=next_cursor)
    return render.respond(r, page, root="deliveries")


@router.route(
    "POST", "/v1/webhooks/{id}/deliveries/{delivery_id}/replay", action=Action.MANAGE_KEYS,
    response=wire.DeliveryOut, status=202, errors=(404, 409),
)  # fmt: skip
async def replay_delivery(ctx: Ctx) -> Response:
    """Send a delivered or dead-lettered event again; the answer is the new, pending
    log entry (the worker sends it, once, out of the normal order)."""
    params.only(ctx.request, [])
    raw = ctx.path("delivery_id")
    if not _NUMBER.fullmatch(raw):
        raise errors.NotFound(f"no delivery {raw!r}")
    replay = await _service(ctx).replay(ctx.tenant, ctx.path("id"), int(raw))
    return render.respond(ctx.request, _delivery(replay), status=202, root="delivery")
