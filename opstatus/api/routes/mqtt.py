"""MQTT agents' broker identity: ``POST /v1/mqtt/credentials``."""

from __future__ import annotations

from starlette.responses import Response

from opstatus import wire
from opstatus.domain import errors
from opstatus.domain.roles import Action
from opstatus.web import params, render
from opstatus.web.endpoint import Ctx, Router

router = Router("mqtt")


@router.route(
    "POST", "/v1/mqtt/credentials", action=Action.PULL, body=None,
    response=wire.MqttCredentialsOut, errors=(403, 404, 503),
)  # fmt: skip
async def issue_broker_credentials(ctx: Ctx) -> Response:
    """Make (or remake) the calling agent key's MQTT broker identity.

    The answer holds a new broker password, shown once; an earlier one stops working and
    a connection that used it is dropped. The broker client's ACL admits only this key's
    request and reply topics (under ``prefix``) and the notice topics of its targets
    (``inboxes``). 404 when the server runs no MQTT bridge; 403 for keys other than agent
    keys; 503 (with Retry-After) while the broker cannot be reached.
    """
    params.only(ctx.request, [])
    broker = ctx.api.broker
    if broker is None:
        raise errors.NotFound("this server runs no MQTT bridge (opstatus serve --mqtt URL)")
    issued = await broker.issue(ctx.who)
    body = wire.MqttCredentialsOut(
        host=issued.host, port=issued.port, tls=issued.tls, username=issued.username,
        password=issued.password, prefix=issued.prefix, inboxes=issued.inboxes,
    )  # fmt: skip
    return render.respond(
        ctx.request, body, headers={"Cache-Control": "no-store"}, root="credentials"
    )
