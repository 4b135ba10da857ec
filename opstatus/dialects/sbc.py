"""Oracle SBC REST dialect: ``auth/token`` and ``admin/asyncstatus`` (docs/dialects.md).

Envelope ``<response><data/><messages/><links/></response>`` in XML (JSON with
``Accept: application/json``: the same object, ``messages`` and ``links`` as arrays).
Where Oracle's documentation is silent:

- ``additionalInfo`` appears inside ``data`` only when the operation has a result
  (the result document); otherwise the body is byte for byte Oracle's example.
- A failed request reports its error twice: ``<errorMessage>`` inside ``data`` (the
  documented words) and one ``messages`` item, as every error response does.
- ``messages`` items are ``<error><reasonCode/><reasonData/></error>`` in XML and
  ``{"reasonCode", "reasonData"}`` objects in JSON; reasonCode is the domain code
  in capitals (``UNAUTHORIZED``, ``NOT_FOUND``…).
- No operation yet: 200 with an empty ``<data/>`` (404 means an unsupported version
  only). The newest operation purged (a tombstone above the newest live number):
  410 in the error envelope, as in every dialect.
- asyncstatus wants ``Authorization: Bearer`` (a token, or an API key secret);
  any query parameter is a malformed request (400).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from xml.etree import ElementTree as ET

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from opstatus.dialects.base import Call, Dialect
from opstatus.domain import errors
from opstatus.domain.roles import Role
from opstatus.domain.states import OperationState
from opstatus.service.operations import OperationView
from opstatus.web import render
from opstatus.web.endpoint import Param

VERSIONS = frozenset({"v1.0", "v1.1", "v1.2"})
XML_HEAD = b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'

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
) -> Response:
    """``data`` and ``(reasonCode, reasonData)`` messages in the SBC envelope."""
    items = [{"reasonCode": code, "reasonData": text} for code, text in messages]
    if _wants_json(request):
        body = msgspec.json.encode({"data": data, "messages": items, "links": []})
        return Response(body, status, headers, media_type="application/json")
    root = ET.Element("response")
    _fill(ET.SubElement(root, "data"), data)
    listed = ET.SubElement(root, "messages")
    for item in items:
        _fill(ET.SubElement(listed, "error"), item)
    ET.SubElement(root, "links")
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
    """Issue an access token for Basic key id:secret credentials."""
    access, expires = await call.api.credentials.issue_token(call.who)
    data = {"access_token": access, "expires_in": expires}
    return envelope(call.request, data, headers={"Cache-Control": "no-store"})


@DIALECT.route(
    "GET", "/rest/{version}/admin/asyncstatus", scheme="Bearer",
    scheme_hint="send Authorization: Bearer {access token}", params=(VERSION,),
    errors=(400, 403, 404, 410), media=MEDIA,
)  # fmt: skip
async def asyncstatus(call: Call) -> Response:
    """The status of the most recent operation (Bearer, admin only)."""
    if call.who.role is not Role.ADMIN:
        raise errors.Forbidden(
            "This request requires the client credentials to have administrator privileges."
        )
    if call.request.query_params:
        raise errors.Invalid("this request takes no query parameters")
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
    data: dict[str, Any] = {"operationState": {"operation": op.kind, "status": status}}
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
