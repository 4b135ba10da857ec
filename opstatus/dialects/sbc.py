"""Oracle SBC REST dialect: ``auth/token`` and ``admin/asyncstatus`` (DESIGN.md §6, seed 001).

Envelope ``<response><data/><messages/><links/></response>`` in XML (JSON with
``Accept: application/json``: the same object, ``messages`` and ``links`` as arrays).
Where the seed is silent:

- ``additionalInfo`` appears inside ``data`` only when the operation has a result
  (the result document); otherwise the body is byte for byte the seed's example.
- A failed request reports its error twice: ``<errorMessage>`` inside ``data`` (the
  seed's words) and one ``messages`` item, as every error response does.
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
from starlette.routing import BaseRoute, Route

from opstatus.dialects import common
from opstatus.domain import errors
from opstatus.domain.roles import Role
from opstatus.domain.states import OperationState
from opstatus.service.credentials import Principal
from opstatus.service.operations import OperationView
from opstatus.web import problems, render

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
    # ElementTree writes "<links />"; the seed writes "<links/>" (text never holds " />").
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


def _error(request: Request, exc: errors.DomainError, scheme: str = "Bearer") -> Response:
    status = problems.status_of(exc)
    headers = common.error_headers(exc)
    if status == 401:
        headers["WWW-Authenticate"] = f'{scheme} realm="opstatus"'
    return envelope(request, {}, [(exc.code.upper(), exc.detail)], status=status, headers=headers)


def _check_version(request: Request) -> None:
    if request.path_params["version"] not in VERSIONS:
        raise errors.NotFound("Unsupported versionId in URI.")


async def token(request: Request) -> Response:
    """``POST /rest/{version}/auth/token`` (Basic key id:secret) → access token."""
    try:
        _check_version(request)
        scheme = request.headers.get("authorization", "").partition(" ")[0].lower()
        if scheme != "basic":
            raise errors.Unauthorized("send Basic credentials (key id:secret)")
        who, limits = await _principal(request)
        access, expires = await common.api(request).credentials.issue_token(who)
    except errors.DomainError as exc:
        return _error(request, exc, "Basic")
    data = {"access_token": access, "expires_in": expires}
    return envelope(request, data, headers={**limits, "Cache-Control": "no-store"})


async def asyncstatus(request: Request) -> Response:
    """``GET /rest/{version}/admin/asyncstatus`` (Bearer, admin) → the newest operation."""
    try:
        _check_version(request)
        scheme = request.headers.get("authorization", "").partition(" ")[0].lower()
        if scheme != "bearer":
            raise errors.Unauthorized("send Authorization: Bearer {access token}")
        who, limits = await _principal(request)
        if who.role is not Role.ADMIN:
            raise errors.Forbidden(
                "This request requires the client credentials to have administrator privileges."
            )
        if request.query_params:
            raise errors.Invalid("this request takes no query parameters")
        view = await newest(request, who.tenant)
    except errors.DomainError as exc:
        return _error(request, exc)
    if view is None:
        return envelope(request, {}, headers=limits)
    data, messages = describe(view, json=_wants_json(request))
    return envelope(request, data, messages, headers=limits)


async def _principal(request: Request) -> tuple[Principal, dict[str, str]]:
    who, limits = await common.principal(request)
    request.state.key_id = who.key_id  # for the access log
    return who, limits


async def newest(request: Request, tenant: str) -> OperationView | None:
    """The tenant's most recent operation; None before the first; Gone if it was purged."""
    operations = common.api(request).operations
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


def routes() -> list[BaseRoute]:
    """The SBC routes."""
    return [
        Route("/rest/{version}/auth/token", token, methods=["POST"]),
        Route("/rest/{version}/admin/asyncstatus", asyncstatus, methods=["GET"]),
    ]
