"""``/openapi.json`` (OpenAPI 3.1) from the endpoint records, and ``/docs`` to browse it.

The document is data derived from :data:`opstatus.api.ENDPOINTS` and the msgspec
Structs of :mod:`opstatus.wire`, so it cannot drift from what the routes do.
``/docs`` is Swagger UI served from the ``swagger-ui-bundle-v2`` package by this
process: it works on a machine with no internet.
"""

from __future__ import annotations

import html
import http
import importlib.metadata
import importlib.resources
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from opstatus import wire
from opstatus.web import problems, render
from opstatus.web.endpoint import Endpoint, Param

OPENAPI = "3.1.0"
REF = "#/components/schemas/{name}"
SECURITY_SCHEMES: dict[str, dict[str, str]] = {
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    "bearer": {"type": "http", "scheme": "bearer"},
    "basic": {"type": "http", "scheme": "basic", "description": "key id : secret"},
}
#: any one of the schemes will do
SECURITY: list[dict[str, list[str]]] = [{name: []} for name in SECURITY_SCHEMES]
#: what a ``{id}`` in a path may be (ids are 1-200 characters)
PATH_ID: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": 200}
FORMAT = Param(
    name="format",
    schema={"type": "string", "enum": list(render.FORMATS)},
    description="json (default), xml or properties (key=value lines); wins over Accept",
)
RATE_LIMIT_HEADERS = (
    "RateLimit",
    "RateLimit-Policy",
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
)
HEADERS: dict[str, dict[str, Any]] = {
    "ETag": {"description": "the resource version, quoted", "schema": {"type": "string"}},
    "Location": {"description": "where the new resource lives", "schema": {"type": "string"}},
    "Retry-After": {
        "description": "seconds to wait before asking again",
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    },
    "WWW-Authenticate": {"description": "the schemes accepted", "schema": {"type": "string"}},
    "RateLimit": {"description": "limit, remaining and reset", "schema": {"type": "string"}},
    "RateLimit-Policy": {"description": "requests;w=window seconds", "schema": {"type": "string"}},
    "RateLimit-Limit": {"description": "requests per window", "schema": {"type": "string"}},
    "RateLimit-Remaining": {"description": "left in this window", "schema": {"type": "string"}},
    "RateLimit-Reset": {"description": "seconds to its reset", "schema": {"type": "string"}},
}  # fmt: skip
#: headers every problem of a status carries, besides the rate-limit ones
PROBLEM_HEADERS: dict[int, tuple[str, ...]] = {
    401: ("WWW-Authenticate",),
    423: ("Retry-After",),
    429: ("Retry-After",),
    503: ("Retry-After",),
}
_PATH_PARAM = re.compile(r"\{([^}:]+)\}")
_STRING = {"type": "string"}


def document(
    endpoints: Sequence[Endpoint], parts: Sequence[Mapping[str, Any]] = ()
) -> dict[str, Any]:
    """The OpenAPI 3.1 document describing ``endpoints`` (and the health checks), plus
    ``parts``: partial documents (``tags``, ``paths``, ``components.schemas``) that other
    route families, such as the vendor dialects, describe themselves."""
    types = {t for ep in endpoints for t in (ep.body, ep.response) if t is not None}
    ordered = sorted(types, key=lambda t: t.__name__)
    _, components = msgspec.json.schema_components([*ordered, wire.Problem], ref_template=REF)
    for name, rule in wire.RULES.items():
        if name in components:
            components[name] = {**components[name], **rule}
    paths: dict[str, dict[str, Any]] = {}
    for ep in endpoints:
        paths.setdefault(ep.path, {})[ep.method.lower()] = _operation(ep)
    paths.update(_health())
    tags = [{"name": tag} for tag in sorted({ep.tag for ep in endpoints} | {"health"})]
    for part in parts:
        tags += part.get("tags", [])
        paths.update(part.get("paths", {}))
        components.update(part.get("components", {}).get("schemas", {}))
    return {
        "openapi": OPENAPI,
        "info": {
            "title": "opstatus",
            "version": _version(),
            "description": (
                "Track asynchronous operations: trigger, watch, report. Errors of the "
                "canonical API are application/problem+json (RFC 9457) with a stable code; "
                "each vendor dialect (one tag each) answers in its vendor's own shapes."
            ),
        },
        "tags": tags,
        "security": SECURITY,
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": SECURITY_SCHEMES,
            "headers": HEADERS,
        },
    }


def _version() -> str:
    try:
        return importlib.metadata.version("opstatus")
    except importlib.metadata.PackageNotFoundError:  # a source tree that was never installed
        return "0"


def _ref(t: type) -> dict[str, str]:
    return {"$ref": REF.format(name=t.__name__)}


def _operation(ep: Endpoint) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": ep.handler.__name__,
        "summary": ep.summary,
        "tags": [ep.tag],
        "parameters": [*_path_params(ep.path), *(p.document() for p in (*ep.params, FORMAT))],
        "responses": _responses(ep),
    }
    doc = (ep.handler.__doc__ or "").strip()
    if doc and doc != ep.summary:
        op["description"] = doc
    if ep.public:
        # The credential is optional here: {} lets a caller send none.
        op["security"] = [{}, *SECURITY]
    if ep.body is not None:
        op["requestBody"] = {
            "required": ep.body_required,
            "content": {"application/json": {"schema": _ref(ep.body)}},
        }
    return op


def _path_params(path: str) -> Iterable[dict[str, Any]]:
    for name in _PATH_PARAM.findall(path):
        yield {"name": name, "in": "path", "required": True, "schema": PATH_ID}


def _headers(names: Iterable[str], *, required: Iterable[str] = ()) -> dict[str, Any]:
    must = set(required)
    return {
        name: (
            {**HEADERS[name], "required": True}
            if name in must
            else {"$ref": f"#/components/headers/{name}"}
        )
        for name in names
    }


def _success(ep: Endpoint, status: int, headers: tuple[str, ...]) -> dict[str, Any]:
    success: dict[str, Any] = {
        "description": http.HTTPStatus(status).phrase,
        "headers": _headers((*headers, *RATE_LIMIT_HEADERS), required=headers),
    }
    if status != 204 and ep.response is not None:
        success["content"] = {
            media: {"schema": _media_schema(ep.response, media)} for media in ep.media
        }
    return success


def _responses(ep: Endpoint) -> dict[str, Any]:
    out: dict[str, Any] = {str(ep.status): _success(ep, ep.status, ep.headers)}
    for status in ep.also:
        out[str(status)] = _success(ep, status, ())
    if any(p.name.lower() == "if-none-match" for p in ep.params):
        out["304"] = {
            "description": "Not Modified: the version named by If-None-Match is current",
            "headers": _headers(("ETag", *RATE_LIMIT_HEADERS), required=("ETag",)),
        }
    # 400: any route refuses a bad ``format``; 503: any route may find the database away
    # or its connections all busy (and a long-poll, every wait slot held)
    statuses = {*ep.errors, 400, 429, 503}
    if not ep.public:
        statuses |= {401, 403}
    if ep.body is not None:
        statuses |= {400, 413, 415, 422}
    for status in sorted(statuses):
        out[str(status)] = _problem(status)
    return out


def _media_schema(response: type, media: str) -> dict[str, Any]:
    if media == render.JSON:
        return _ref(response)
    return dict(_STRING)  # XML, key=value lines and SSE are text, described in prose


def _problem(status: int) -> dict[str, Any]:
    return {
        "description": problems.TITLES.get(status, http.HTTPStatus(status).phrase),
        "headers": _headers(
            (*PROBLEM_HEADERS.get(status, ()), *RATE_LIMIT_HEADERS),
            required=PROBLEM_HEADERS.get(status, ()),
        ),
        "content": {problems.MEDIA: {"schema": _ref(wire.Problem)}},
    }


def _health() -> dict[str, dict[str, Any]]:
    def status(*values: str) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {"status": {"enum": list(values)}, "detail": _STRING},
            "required": ["status"],
        }

    def op(op_id: str, summary: str, responses: dict[int, tuple[str, dict[str, Any]]]) -> Any:
        return {
            "get": {
                "operationId": op_id,
                "summary": summary,
                "tags": ["health"],
                "security": [],
                "responses": {
                    str(code): {
                        "description": text,
                        "content": {"application/json": {"schema": schema}},
                    }
                    for code, (text, schema) in responses.items()
                },
            }
        }

    return {
        "/healthz": op(
            "healthz", "Liveness: the process answers HTTP.", {200: ("OK", status("ok"))}
        ),
        "/readyz": op(
            "readyz",
            "Readiness: the database answers a trivial query.",
            {
                200: ("Ready", status("ready")),
                503: ("The database does not answer", status("unavailable")),
            },
        ),
    }


# serving ---------------------------------------------------------------------------
_DOCS_HTML = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>opstatus API</title>
<link rel="stylesheet" href="{assets}/swagger-ui.css">
<link rel="icon" type="image/png" href="{assets}/favicon-32x32.png" sizes="32x32">
</head>
<body>
<div id="swagger-ui" data-spec="{spec}"></div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script src="{root}/docs/init.js"></script>
</body>
</html>
"""
# A separate script, not inline, so a strict Content-Security-Policy can still allow it.
_DOCS_INIT = """window.addEventListener("load", function () {
  var node = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: node.dataset.spec,
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
  });
});
"""


def swagger_ui_dir() -> Path:
    """The Swagger UI static files that ``swagger-ui-bundle-v2`` ships."""
    # The package is untyped, and its files are all this needs: find them as resources.
    vendor = Path(str(importlib.resources.files("swagger_ui_bundle"))) / "vendor"
    found = sorted(vendor.glob("swagger-ui-*"))
    if not found:
        raise RuntimeError(f"no Swagger UI under {vendor}; reinstall swagger-ui-bundle-v2")
    return found[-1]


def routes(
    endpoints: Sequence[Endpoint], parts: Sequence[Mapping[str, Any]] = ()
) -> list[BaseRoute]:
    """``GET /openapi.json`` (of ``endpoints`` and ``parts``, see :func:`document`),
    ``GET /docs`` and the Swagger UI assets (all public)."""
    body = msgspec.json.encode(document(endpoints, parts))

    async def openapi_json(request: Request) -> Response:
        """The OpenAPI 3.1 document."""
        return Response(body, media_type="application/json")

    async def docs(request: Request) -> Response:
        """Swagger UI over /openapi.json."""
        root = html.escape(request.scope.get("root_path", "").rstrip("/"))
        page = _DOCS_HTML.format(
            assets=f"{root}/docs/assets", spec=f"{root}/openapi.json", root=root
        )
        return HTMLResponse(page)

    async def docs_init(request: Request) -> Response:
        """The script that starts Swagger UI."""
        return Response(_DOCS_INIT, media_type="text/javascript")

    return [
        Route("/openapi.json", openapi_json, methods=["GET"]),
        Route("/docs", docs, methods=["GET"]),
        Route("/docs/init.js", docs_init, methods=["GET"]),
        Mount("/docs/assets", StaticFiles(directory=swagger_ui_dir()), name="docs-assets"),
    ]
