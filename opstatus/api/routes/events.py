"""Events: JSON pages, or Server-Sent Events resumable with ``Last-Event-ID``."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import msgspec
from starlette.responses import Response

from opstatus import wire
from opstatus.api import convert
from opstatus.domain import errors
from opstatus.domain.roles import Action
from opstatus.service import notifier
from opstatus.web import params, render
from opstatus.web.endpoint import Ctx, Param, Router
from opstatus.web.waits import HeldStream

router = Router("events")
SSE = "text/event-stream"
END = "end"  #: the last event of one operation's stream, once the operation is final
_PAGE = 500  #: events read per round
_PARAMS = (
    Param(name="after", schema={"type": "integer", "minimum": 0, "maximum": 2**62},
          description="only events with a larger seq"),
    Param(name="limit", schema={"type": "integer", "minimum": 1, "maximum": 1000}),
    Param(name="Last-Event-ID", where="header",
          schema={"type": "string", "pattern": "^[0-9]{0,18}$"},
          description="SSE resume point (wins over after)"),
)  # fmt: skip
_encoder = msgspec.json.Encoder()


def _after(ctx: Ctx) -> int:
    """Where the page or stream starts: ``Last-Event-ID`` when sent, else ``after``
    (which is checked either way: a bad value is refused, not ignored)."""
    after = params.integer(ctx.request, "after", 0) or 0
    last = ctx.request.headers.get("last-event-id")
    if last is not None and last.strip():
        if not re.fullmatch("[0-9]{1,18}", last.strip()):
            raise errors.Invalid("Last-Event-ID must be an event seq", parameter="Last-Event-ID")
        return int(last)
    return after


async def _events(ctx: Ctx, operation_id: str | None) -> Response:
    r = ctx.request
    params.only(r, ["after", "limit"])
    after = _after(ctx)
    limit = params.integer(r, "limit", 100, low=1, high=1000) or 100
    ops = ctx.api.operations
    if operation_id is not None:
        await ops.get(ctx.tenant, operation_id)  # 404 / 410 before a stream starts
    if SSE in r.headers.get("accept", ""):
        ctx.api.waits.take()  # given back when the stream ends (HeldStream)
        return HeldStream(
            ctx.api.waits,
            _stream(ctx, operation_id, after),
            media_type=SSE,
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    found = await ops.events(ctx.tenant, after, limit=limit, operation_id=operation_id)
    return render.respond(
        r,
        wire.EventList(
            items=[convert.event(e) for e in found], last_seq=found[-1].seq if found else after
        ),
        root="events",
    )


async def _stream(ctx: Ctx, operation_id: str | None, after: int) -> AsyncIterator[bytes]:
    """Backlog first, then each new event as it commits; a comment when idle
    (every ``Api.keepalive`` seconds). The stream ends, with a last comment, once the
    caller's key is revoked or token expires (the client's reconnect then gets 401).

    One operation's stream also ends: once the operation is final and every event up to
    that is sent, an ``end`` event (no ``id``, the operation as data) closes it.
    """
    ops, notes = ctx.api.operations, ctx.api.notifier
    key = notifier.events_key(ctx.tenant)
    watch = ctx.watch()
    yield b"retry: 1000\n\n"
    try:
        while True:
            waiter = notes.subscribe(key)
            try:
                await watch.due()
                # Read the operation before its events: every event that made it final
                # committed before this read, so the page below holds them all.
                final = await _final(ctx, operation_id)
                found = await ops.events(ctx.tenant, after, limit=_PAGE, operation_id=operation_id)
                for event in found:
                    after = event.seq
                    data = _encoder.encode(convert.event(event)).decode()
                    yield f"id: {event.seq}\nevent: {event.type}\ndata: {data}\n\n".encode()
                if final is not None and len(found) < _PAGE:
                    yield f"event: {END}\ndata: {final}\n\n".encode()
                    return
                if notes.closing:
                    return  # shutting down: all committed events are out; the client resumes
                if not found and await watch.wait(waiter, ctx.api.keepalive) is None:
                    yield b": keep-alive\n\n"
            except errors.Gone:
                return  # deleted meanwhile: its operation.deleted event was the last word
            finally:
                waiter.cancel()
    except errors.Unauthorized:
        yield b": the credential was revoked or has expired\n\n"


async def _final(ctx: Ctx, operation_id: str | None) -> str | None:
    """The operation as JSON once it is final (``None`` while it runs, or for no one)."""
    if operation_id is None:
        return None
    ops = ctx.api.operations
    view = await ops.get(ctx.tenant, operation_id, executions=False)
    if not view.operation.state.terminal:
        return None
    return _encoder.encode(convert.operation(view, ops.clock())).decode()


@router.route(
    "GET", "/v1/events", action=Action.READ, response=wire.EventList, errors=(400,),
    params=_PARAMS, media=("application/json", "application/xml", "text/plain", SSE),
)  # fmt: skip
async def tenant_events(ctx: Ctx) -> Response:
    """Every event of the tenant after a seq (JSON, or SSE with Accept: text/event-stream)."""
    return await _events(ctx, None)


@router.route(
    "GET", "/v1/operations/{id}/events", action=Action.READ, response=wire.EventList,
    errors=(400, 404, 410), params=_PARAMS,
    media=("application/json", "application/xml", "text/plain", SSE),
)  # fmt: skip
async def operation_events(ctx: Ctx) -> Response:
    """One operation's events after a seq (JSON, or SSE).

    The SSE stream ends once the operation is final (succeeded, failed or cancelled)
    and all its events up to then are sent: a last event ``end`` (no ``id``) carries
    the final operation (as ``GET /v1/operations/{id}`` without executions), and the
    server closes the stream. A client stops there rather than reconnecting. The
    tenant-wide ``GET /v1/events`` stream stays open.
    """
    return await _events(ctx, ctx.path("id"))
