"""The dashboard at ``/ui``: static files served by this process, nothing to build.

The page signs in with an API key kept in the browser's ``sessionStorage`` (never in
the URL) and reads the canonical ``/v1`` API with it, live over Server-Sent Events.
These routes are not :class:`~opstatus.web.endpoint.Endpoint` records, so they stay
out of the OpenAPI document.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

#: same-origin scripts, styles and API calls only; no frames, no plugins
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def static_dir() -> Path:
    """Where the dashboard's files are installed (package data)."""
    return Path(str(importlib.resources.files(__name__))) / "static"


class _Files(StaticFiles):
    """Static files that are revalidated on each load and carry the dashboard's CSP."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers["Cache-Control"] = "no-cache"
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response


async def _to_slash(request: Request) -> Response:
    """``/ui`` → ``/ui/``, so the page's relative asset links resolve."""
    root = request.scope.get("root_path", "").rstrip("/")
    return RedirectResponse(f"{root}/ui/", status_code=308)


def routes() -> list[BaseRoute]:
    """``GET /ui`` (a redirect) and the dashboard's files under ``/ui/`` (all public)."""
    return [
        Route("/ui", _to_slash, methods=["GET", "HEAD"]),
        Mount("/ui", _Files(directory=static_dir(), html=True), name="ui"),
    ]
