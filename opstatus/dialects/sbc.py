"""Oracle SBC REST dialect: token, configuration lock, activate, asyncstatus (docs/dialects.md).

Envelope ``<response><data/><messages/><links/></response>`` in XML (JSON with
``Accept: application/json``: the same object, ``messages`` and ``links`` as arrays).
The native workflow is Oracle's: ``auth/token`` (Basic → a ten-minute token),
``configuration/lock`` (204; 423 while another token holds it), ``configuration/
management?action=activate`` (202, ``links`` to ``admin/asyncstatus``; an
operation of kind ``sbc.activate`` on the tenant's targets labelled ``sbc=true``),
``admin/asyncstatus``, then ``configuration/unlock`` or ``DELETE configuration/lock``.
Every route but the token's takes ``Authorization: Bearer {access token}`` only: a
token from ``auth/token`` (or ``/v1/auth/token``), never an API key secret or an
``X-API-Key`` header. The configuration lock is a per-tenant row tied to the token
that took it (it ends when that token expires or its key is revoked).
Where Oracle's documentation is silent:

- ``additionalInfo`` appears inside ``data`` only when the operation has a result
  (the result document); otherwise the body is byte for byte Oracle's example.
- A failed request reports its error twice: ``<errorMessage>`` inside ``data`` (the
  documented words) and one ``messages`` item, as every error response does.
- ``messages`` items are ``<error><reasonCode/><reasonData/></error>`` in XML and
  ``{"reasonCode", "reasonData"}`` objects in JSON; reasonCode is the domain code
  in capitals (``UNAUTHORIZED``, ``NOT_FOUND``…); ``links`` items are ``<link>URL
  </link>`` (JSON ``{"link": URL}``).
- No operation yet: 200 with an empty ``<data/>`` (404 means an unsupported version
  only). The newest operation purged (a tombstone above the newest live number):
  410 in the error envelope, as in every dialect.
- Any query parameter on asyncstatus, lock or unlock is a malformed request (400).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from xml.etree import ElementTree as ET

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from opstatus.dialects.base import Call, Dialect, required
from opstatus.domain import errors
from opstatus.domain.roles import Role
from opstatus.domain.states import OperationState
from opstatus.service.credentials import Principal
from opstatus.service.operations import OperationView
from opstatus.service.requests import CreateOperation
from opstatus.web import render
from opstatus.web.endpoint import Api, Param

VERSIONS = frozenset({"v1.0", "v1.1", "v1.2"})
XML_HEAD = b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
#: seconds an SBC access token lives (Oracle: ten minutes)
TOKEN_TTL = 600
#: the tenant lock the configuration lock is (store: token_locks)
LOCK = "sbc.configuration"
#: operation kinds the SBC starts carry this prefix; asyncstatus shows the kind without it
KIND_PREFIX = "sbc."
#: the targets an activation runs on: the tenant's targets with this label and value
TARGET_LABEL = ("sbc", "true")
ADMIN_ONLY = "This request requires the client credentials to have administrator privileges."
LOCKED_BY_OTHER = "Resource locked by another user"
NOT_HOLDER = "User does not have the lock"

_O = OperationState
#: canonical operation state -> SBC ``status``; the only place the spelling lives
STATUS: dict[OperationState, str] = {
    _O.SCHEDULED: "pending",
    _O.QUEUED: "pending",
    _O.RUNNING: "inProgress",
    _O.SUCCEEDED: "success",
    _O.FAILED: "failure",
    _O.CANCELLED: "failure",
}


def _wants_json(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "json" in accept and "xml" not in accept


def envelope(
    request: Request,
    data: dict[str, Any],
    messages: Sequence[tuple[str, str]] = (),
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
    links: Sequence[str] = (),
) -> Response:
    """``data``, ``(reasonCode, reasonData)`` messages and link URLs in the SBC envelope."""
    items = [{"reasonCode": code, "reasonData": text} for code, text in messages]
    if _wants_json(request):
        listed_links = [{"link": url} for url in links]
        body = msgspec.json.encode({"data": data, "messages": items, "links": listed_links})
        return Response(body, status, headers, media_type="application/json")
    root = ET.Element("response")
    _fill(ET.SubElement(root, "data"), data)
    listed = ET.SubElement(root, "messages")
    for item in items:
        _fill(ET.SubElement(listed, "error"), item)
    linked = ET.SubElement(root, "links")
    for url in links:
        ET.SubElement(linked, "link").text = render.xml_text(url)
    ET.indent(root, "  ")
    # ElementTree writes "<links />"; Oracle's example writes "<links/>" (text never holds " />").
    text = ET.tostring(root, encoding="unicode").replace(" />", "/>")
    return Response(XML_HEAD + text.encode() + b"\n", status, headers, "application/xml")


def _fill(element: ET.Element, data: dict[str, Any]) -> None:
    for key, value in data.items():
        if isinstance(value, ET.Element):
            element.append(value)
        elif isinstance(value, dict):
            _fill(ET.SubElement(element, key), value)
        else:
            ET.SubElement(element, key).text = render.xml_text(str(value))


def render_error(request: Request, status: int, exc: errors.DomainError) -> Response:
    """The envelope with no data and the error as its one message."""
    return envelope(request, {}, [(exc.code.upper(), exc.detail)], status=status)


def _check_version(request: Request) -> None:
    if request.path_params.get("version") not in VERSIONS:
        raise errors.NotFound("Unsupported versionId in URI.")


def _bearer_value(request: Request) -> str:
    """The access token of ``Authorization: Bearer``; the wrapper checked the scheme."""
    return request.headers.get("authorization", "").partition(" ")[2].strip()


async def bearer_token(request: Request, api: Api) -> Principal:
    """The SBC accepts its access token only: not X-API-Key, not an API key secret."""
    value = _bearer_value(request)
    if not value:
        raise errors.Unauthorized("send Authorization: Bearer {access token}")
    return await api.credentials.by_token(value)


def _admin(call: Call, *, query: bool = False) -> None:
    """Oracle's admin-only rule, and no query parameters unless the route takes them."""
    if call.who.role is not Role.ADMIN:
        raise errors.Forbidden(ADMIN_ONLY)
    if not query and call.request.query_params:
        raise errors.Invalid("this request takes no query parameters")


#: an envelope in either media type; Oracle's schema, described in prose
_ENVELOPE: dict[str, Any] = {"type": "string", "description": "<response> envelope"}
DIALECT = Dialect(
    name="sbc", tag="Oracle SBC", prefixes=("/rest",), render=render_error,
    guard=_check_version, error_media=("application/xml", "application/json"),
    error_schema=_ENVELOPE,
)  # fmt: skip
VERSION = Param(
    name="version", where="path", required=True,
    schema={"type": "string", "enum": sorted(VERSIONS)},
)  # fmt: skip
MEDIA = ("application/xml", "application/json")


@DIALECT.route(
    "POST", "/rest/{version}/auth/token", scheme="Basic",
    scheme_hint="send Basic credentials (key id:secret)", params=(VERSION,), errors=(404,),
    media=MEDIA,
)  # fmt: skip
async def token(call: Call) -> Response:
    """Issue a ten-minute access token for Basic key id:secret credentials.

    Asking again before it expires (early re-authentication) gives a fresh token; the
    earlier one keeps working until its own expiry, and keeps the configuration lock
    it holds (Oracle ties the lock to the token).
    """
    access, expires = await call.api.credentials.issue_token(call.who, ttl=TOKEN_TTL)
    data = {"accessToken": access, "expires_in": expires}
    return envelope(call.request, data, headers={"Cache-Control": "no-store"})


_BEARER: dict[str, Any] = {
    "scheme": "Bearer", "scheme_hint": "send Authorization: Bearer {access token}",
    "authenticate": bearer_token, "params": (VERSION,), "media": MEDIA,
}  # fmt: skip


@DIALECT.route("POST", "/rest/{version}/configuration/lock", success=204,
               errors=(400, 403, 404, 423), **_BEARER)  # fmt: skip
async def lock(call: Call) -> Response:
    """Take the configuration lock for this token (admin only); 423 if another holds it."""
    _admin(call)
    if not await call.api.credentials.take_lock(call.tenant, LOCK, _bearer_value(call.request)):
        raise errors.Locked(LOCKED_BY_OTHER)
    return Response(status_code=204)


@DIALECT.route("POST", "/rest/{version}/configuration/unlock", success=204,
               errors=(400, 403, 404, 423), **_BEARER)  # fmt: skip
async def unlock(call: Call) -> Response:
    """Release the configuration lock this token holds (admin only); 423 if it holds none."""
    _admin(call)
    credentials, held_by = call.api.credentials, _bearer_value(call.request)
    if not await credentials.release_lock(call.tenant, LOCK, held_by):
        await _refuse_without_lock(call)
    return Response(status_code=204)


@DIALECT.route("DELETE", "/rest/{version}/configuration/lock", success=204,
               errors=(400, 403, 404, 423), **_BEARER)  # fmt: skip
async def release(call: Call) -> Response:
    """Release the configuration lock this token holds: ``unlock`` by another name."""
    return await unlock(call)


async def _refuse_without_lock(call: Call) -> None:
    """Oracle's two 423 answers: another holds the lock, or nobody does."""
    state = await call.api.credentials.lock_state(call.tenant, LOCK, _bearer_value(call.request))
    if state is not True:
        raise errors.Locked(NOT_HOLDER if state is None else LOCKED_BY_OTHER)


@DIALECT.route(
    "POST", "/rest/{version}/configuration/management", success=202,
    errors=(400, 403, 404, 409, 423),
    **_BEARER | {"params": (VERSION, required("action", "`activate`: the saved configuration"))},
)  # fmt: skip
async def management(call: Call) -> Response:
    """``action=activate``: start activating on the SBC's targets (lock holder, admin)."""
    _admin(call, query=True)
    action = call.request.query_params.get("action")
    if action != "activate" or set(call.request.query_params) != {"action"}:
        raise errors.Invalid("the only action served is action=activate")
    await _refuse_without_lock(call)
    label, value = TARGET_LABEL
    targets = await call.api.operations.labelled(call.tenant, label, value)
    if not targets:
        raise errors.Conflict(f"no target is labelled {label}={value}: nothing to activate")
    request = CreateOperation(kind=f"{KIND_PREFIX}activate", targets=[t.id for t in targets])
    await call.api.operations.create(call.tenant, request)
    version = call.path("version")
    link = str(call.request.base_url).rstrip("/") + f"/rest/{version}/admin/asyncstatus"
    return envelope(call.request, {}, status=202, links=[link])


@DIALECT.route(
    "GET", "/rest/{version}/admin/asyncstatus", errors=(400, 403, 404, 410), **_BEARER,
)  # fmt: skip
async def asyncstatus(call: Call) -> Response:
    """The status of the most recent operation (Bearer, admin only)."""
    _admin(call)
    view = await newest(call, call.tenant)
    if view is None:
        return envelope(call.request, {})
    data, messages = describe(view, json=_wants_json(call.request))
    return envelope(call.request, data, messages)


async def newest(call: Call, tenant: str) -> OperationView | None:
    """The tenant's most recent operation; None before the first; Gone if it was purged."""
    operations = call.api.operations
    try:
        view: OperationView | None = await operations.latest(tenant)
    except errors.NotFound:
        view = None
    # Numbers are consecutive per tenant: the one after the newest live operation is
    # either missing (nothing newer), tombstoned (Gone: the newest was purged), or
    # created since the first read (report it).
    after = 1 if view is None else view.operation.number + 1
    try:
        return await operations.get_by_number(tenant, after)
    except errors.NotFound:
        return view


def describe(view: OperationView, *, json: bool) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The ``data`` of one operation and, when it failed, its error as a message."""
    op = view.operation
    status = STATUS[op.state]
    operation = op.kind.removeprefix(KIND_PREFIX)
    data: dict[str, Any] = {"operationState": {"operation": operation, "status": status}}
    if op.result is not None and op.result != {}:
        data["additionalInfo"] = op.result if json else _element(op.result)
    if status != "failure":
        return data, []
    text = op.error or f"the operation was {op.state}"
    data["errorMessage"] = text
    return data, [(f"OPERATION_{op.state.upper()}", text)]


def _element(result: Any) -> ET.Element:
    """The result document as ``<additionalInfo>`` (the canonical XML rendering)."""
    return ET.fromstring(render.to_xml(result, "additionalInfo"))
